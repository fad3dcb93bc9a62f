package org.libchat;

/**
 * How the client reaches the server: a WebSocket and HTTP requests. The
 * client core is sans-I/O, so any stack can carry its frames: {@link
 * OkHttpTransport} (Android, any JVM), {@link JdkTransport} (java.net.http,
 * server JVMs). Implementations call their listeners from any thread; the
 * client hands everything to its own core thread.
 */
public interface Transport {
  /** An open (or opening) WebSocket. */
  interface Socket {
    /** Queue one text message; sent in order. Ignored once closed. */
    void send(String text);

    /** Close (or abandon an attempt) with this code; no event follows. */
    void close(int code);
  }

  /** Events of one socket; exactly one of onClosed/onRefused/onFailure ends it. */
  interface SocketListener {
    void onOpen();

    /** One whole text message. */
    void onText(String text);

    /** The server closed it (or it died) with this close code (0: none). */
    void onClosed(int code);

    /** The server answered the upgrade with this HTTP status, not 101. */
    void onRefused(int httpStatus);

    /** The connection failed (no answer, reset, TLS, ...). */
    void onFailure(Throwable cause);
  }

  /** The answer to a request: HTTP status and body, or status 0 for none. */
  interface ResponseListener {
    void onResponse(int status, byte[] body);
  }

  /**
   * Open a WebSocket to {@code url} with subprotocol {@code chat.v1} and
   * {@code Authorization: Bearer token} (token may be null: none).
   */
  Socket connect(String url, String token, SocketListener listener);

  /** An HTTP request with the same bearer token; body null for none. */
  void request(String method, String url, String token, byte[] body,
               ResponseListener listener);

  /** Release threads and connections. The client calls it when it owns the transport. */
  void close();
}
