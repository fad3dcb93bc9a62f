package org.libchat;

import java.util.concurrent.TimeUnit;
import okhttp3.Call;
import okhttp3.Callback;
import okhttp3.MediaType;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.RequestBody;
import okhttp3.Response;
import okhttp3.ResponseBody;
import okhttp3.WebSocket;
import okhttp3.WebSocketListener;

/**
 * The transport over OkHttp: what Android apps use (and any JVM). Give it
 * the app's own OkHttpClient to share its connection pool and settings; a
 * client given in is never shut down here.
 */
public final class OkHttpTransport implements Transport {
  private static final MediaType JSON = MediaType.get("application/json");
  private final OkHttpClient http;
  private final boolean owned;

  public OkHttpTransport() {
    this(new OkHttpClient.Builder()
        .connectTimeout(15, TimeUnit.SECONDS)
        .readTimeout(0, TimeUnit.SECONDS) // the client core runs its own heartbeat
        .writeTimeout(15, TimeUnit.SECONDS)
        .proxy(java.net.Proxy.NO_PROXY)
        .followRedirects(false)
        .build(), true);
  }

  /** Over the app's OkHttpClient (it stays the app's). */
  public OkHttpTransport(OkHttpClient client) {
    this(client, false);
  }

  private OkHttpTransport(OkHttpClient client, boolean owned) {
    this.http = client;
    this.owned = owned;
  }

  @Override
  public Socket connect(String url, String token, SocketListener listener) {
    // OkHttp speaks http(s) URLs for WebSockets too.
    String u = url.startsWith("wss:") ? "https:" + url.substring(4)
        : url.startsWith("ws:") ? "http:" + url.substring(3) : url;
    Request.Builder rb = new Request.Builder().url(u).header("Sec-WebSocket-Protocol", "chat.v1");
    if (token != null) {
      rb.header("Authorization", "Bearer " + token);
    }
    OkSocket s = new OkSocket(listener);
    s.ws = http.newWebSocket(rb.build(), s);
    return s;
  }

  @Override
  public void request(String method, String url, String token, byte[] body,
                      ResponseListener listener) {
    Request.Builder rb = new Request.Builder().url(url);
    if (token != null) {
      rb.header("Authorization", "Bearer " + token);
    }
    rb.method(method, body == null ? null : RequestBody.create(body, JSON));
    http.newCall(rb.build()).enqueue(new Callback() {
      @Override
      public void onFailure(Call call, java.io.IOException e) {
        listener.onResponse(0, null);
      }

      @Override
      public void onResponse(Call call, Response r) {
        int status = r.code();
        byte[] b;
        try (ResponseBody rbody = r.body()) {
          b = rbody.bytes();
        } catch (java.io.IOException | RuntimeException e) {
          listener.onResponse(0, null);
          return;
        }
        listener.onResponse(status, b);
      }
    });
  }

  @Override
  public void close() {
    if (owned) {
      http.dispatcher().executorService().shutdown();
      http.connectionPool().evictAll();
    }
  }

  /** One WebSocket; one end event, none after the client's own close(). */
  private static final class OkSocket extends WebSocketListener implements Socket {
    private final SocketListener listener;
    volatile WebSocket ws;
    private boolean ended; // guarded by this

    OkSocket(SocketListener listener) {
      this.listener = listener;
    }

    private synchronized boolean end() {
      if (ended) {
        return false;
      }
      ended = true;
      return true;
    }

    private synchronized boolean live() {
      return !ended;
    }

    @Override
    public void send(String text) {
      if (live()) {
        ws.send(text); // OkHttp queues in order
      }
    }

    @Override
    public void close(int code) {
      if (end()) {
        if (!ws.close(code, null)) {
          ws.cancel();
        }
      }
    }

    @Override
    public void onOpen(WebSocket w, Response response) {
      if (live()) {
        listener.onOpen();
      }
    }

    @Override
    public void onMessage(WebSocket w, String text) {
      if (live()) {
        listener.onText(text);
      }
    }

    @Override
    public void onClosing(WebSocket w, int code, String reason) {
      w.close(code == 1005 || code == 1006 ? 1000 : code, null);
      if (end()) {
        listener.onClosed(code);
      }
    }

    @Override
    public void onClosed(WebSocket w, int code, String reason) {
      if (end()) {
        listener.onClosed(code);
      }
    }

    @Override
    public void onFailure(WebSocket w, Throwable t, Response response) {
      if (!end()) {
        return;
      }
      if (response != null && response.code() != 101) {
        int status = response.code();
        response.close();
        listener.onRefused(status);
      } else {
        listener.onFailure(t);
      }
    }
  }
}
