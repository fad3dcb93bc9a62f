package org.libchat;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.net.http.WebSocketHandshakeException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The transport of server JVMs: java.net.http's WebSocket and HttpClient
 * (Java 11+). Not on Android, which has no java.net.http: an Android build
 * leaves this class out and uses {@link OkHttpTransport}.
 */
@ServerJvmOnly
public final class JdkTransport implements Transport {
  private static final AtomicInteger SEQ = new AtomicInteger();
  private final ExecutorService pool;
  private final HttpClient http;
  private final Duration timeout;

  public JdkTransport() {
    this(Duration.ofSeconds(15));
  }

  /** @param timeout for connecting and for each HTTP request */
  public JdkTransport(Duration timeout) {
    int n = SEQ.incrementAndGet();
    AtomicInteger k = new AtomicInteger();
    this.pool = Executors.newCachedThreadPool(r -> {
      Thread t = new Thread(r, "libchat-jdk-" + n + "-" + k.incrementAndGet());
      t.setDaemon(true);
      return t;
    });
    this.timeout = timeout;
    // HTTP/1.1: by default java.net.http asks plain-http servers for an
    // "Upgrade: h2c", which chatd answers 400 (it takes only WebSocket
    // upgrades).
    this.http = HttpClient.newBuilder()
        .version(HttpClient.Version.HTTP_1_1)
        .executor(pool)
        .connectTimeout(timeout)
        .proxy(HttpClient.Builder.NO_PROXY)
        .followRedirects(HttpClient.Redirect.NEVER)
        .build();
  }

  @Override
  public Socket connect(String url, String token, SocketListener listener) {
    JdkSocket s = new JdkSocket(listener);
    WebSocket.Builder b = http.newWebSocketBuilder()
        .subprotocols("chat.v1")
        .connectTimeout(timeout);
    if (token != null) {
      b.header("Authorization", "Bearer " + token);
    }
    b.buildAsync(URI.create(url), s).whenComplete((ws, err) -> {
      if (err != null) {
        s.failed(err);
      } else {
        s.opened(ws);
      }
    });
    return s;
  }

  @Override
  public void request(String method, String url, String token, byte[] body,
                      ResponseListener listener) {
    HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url)).timeout(timeout);
    if (token != null) {
      b.header("Authorization", "Bearer " + token);
    }
    if (body != null) {
      b.header("Content-Type", "application/json");
      b.method(method, HttpRequest.BodyPublishers.ofByteArray(body));
    } else {
      b.method(method, HttpRequest.BodyPublishers.noBody());
    }
    http.sendAsync(b.build(), HttpResponse.BodyHandlers.ofByteArray())
        .whenComplete((r, err) -> {
          if (err != null) {
            listener.onResponse(0, null);
          } else {
            listener.onResponse(r.statusCode(), r.body());
          }
        });
  }

  @Override
  public void close() {
    pool.shutdownNow();
  }

  /**
   * One WebSocket. java.net.http allows one outstanding send at a time, so
   * sends queue here and go out one after another; text arriving in parts
   * is joined; exactly one end event reaches the listener, none after a
   * close() by the client.
   */
  @ServerJvmOnly
  private static final class JdkSocket implements Socket, WebSocket.Listener {
    private final SocketListener listener;
    private final ArrayDeque<String> queue = new ArrayDeque<>();
    private final StringBuilder part = new StringBuilder();
    private WebSocket ws; // guarded by this
    private boolean sending; // guarded by this
    private boolean closed; // guarded by this: closed by us, or ended
    private int closeCode = -1; // guarded by this: close() before open

    JdkSocket(SocketListener listener) {
      this.listener = listener;
    }

    private boolean end() {
      synchronized (this) {
        if (closed) {
          return false;
        }
        closed = true;
        queue.clear();
        return true;
      }
    }

    void opened(WebSocket w) {
      int code;
      synchronized (this) {
        ws = w;
        code = closeCode;
      }
      if (code >= 0) {
        w.sendClose(code, "").whenComplete((x, e) -> w.abort());
      }
    }

    void failed(Throwable err) {
      if (!end()) {
        return;
      }
      Throwable c = err instanceof CompletionException && err.getCause() != null
          ? err.getCause() : err;
      if (c instanceof WebSocketHandshakeException) {
        listener.onRefused(((WebSocketHandshakeException) c).getResponse().statusCode());
      } else {
        listener.onFailure(c);
      }
    }

    @Override
    public void send(String text) {
      WebSocket w;
      synchronized (this) {
        if (closed || ws == null) {
          return;
        }
        if (sending) {
          queue.add(text);
          return;
        }
        sending = true;
        w = ws;
      }
      sendNow(w, text);
    }

    private void sendNow(WebSocket w, String text) {
      w.sendText(text, true).whenComplete((x, err) -> {
        if (err != null) {
          w.abort();
          if (end()) {
            listener.onFailure(err);
          }
          return;
        }
        String next;
        synchronized (this) {
          next = closed ? null : queue.poll();
          if (next == null) {
            sending = false;
            return;
          }
        }
        sendNow(w, next);
      });
    }

    @Override
    public void close(int code) {
      WebSocket w;
      synchronized (this) {
        if (closed) {
          return;
        }
        closed = true;
        queue.clear();
        w = ws;
        if (w == null) {
          closeCode = code; // still opening: close when it opens
          return;
        }
      }
      // Send the close after what is queued in java.net.http, then drop
      // the connection if the server takes long to answer it.
      w.sendClose(code, "").orTimeout(2, java.util.concurrent.TimeUnit.SECONDS)
          .whenComplete((x, e) -> {
            if (e != null) {
              w.abort();
            }
          });
    }

    // WebSocket.Listener (java.net.http's threads)

    @Override
    public void onOpen(WebSocket w) {
      synchronized (this) {
        ws = w;
      }
      w.request(1);
      boolean live;
      synchronized (this) {
        live = !closed;
      }
      if (live) {
        listener.onOpen();
      }
    }

    @Override
    public CompletionStage<?> onText(WebSocket w, CharSequence data, boolean last) {
      part.append(data);
      if (last) {
        String text = part.toString();
        part.setLength(0);
        boolean live;
        synchronized (this) {
          live = !closed;
        }
        if (live) {
          listener.onText(text);
        }
      }
      w.request(1);
      return null;
    }

    @Override
    public CompletionStage<?> onBinary(WebSocket w, ByteBuffer data, boolean last) {
      w.request(1); // chat.v1 is text only; the client ignores binary
      return null;
    }

    @Override
    public CompletionStage<?> onClose(WebSocket w, int code, String reason) {
      if (end()) {
        listener.onClosed(code);
      }
      return null; // java.net.http answers the close
    }

    @Override
    public void onError(WebSocket w, Throwable err) {
      if (end()) {
        listener.onFailure(err);
      }
    }
  }
}
