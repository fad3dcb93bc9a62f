package org.libchat;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.libchat.Events.Ack;
import org.libchat.Events.AuthReason;
import org.libchat.Events.ChatError;
import org.libchat.Events.ConnectionState;
import org.libchat.Events.Hello;
import org.libchat.Events.Origin;
import org.libchat.Events.Presence;
import org.libchat.Events.Receipt;
import org.libchat.Events.ReceiptState;
import org.libchat.Events.ResumeProgress;
import org.libchat.Events.StoredMessage;

/**
 * Everything of a client but its public face: the native handle, the one
 * "core" thread that owns it, the socket and requests in flight, and the
 * queue of listener calls. It never refers to the {@link ChatClient}, so a
 * client the app drops can be collected and cleaned.
 *
 * Thread rule: fields marked "core" are touched on the core thread only;
 * every native call happens there.
 */
final class Core extends NativeEvents {
  private static final Logger LOG = Logger.getLogger("org.libchat");
  private static final AtomicInteger SEQ = new AtomicInteger();

  /* Futures complete here, never on the core thread (their dependents are
   * app code) nor on the callback executor (a listener blocked on get()
   * would wait for itself). Idle threads end after a minute. */
  private static final ExecutorService COMPLETE = Executors.newCachedThreadPool(
      daemon("libchat-complete"));

  private static final int KIND_CONVERSATIONS = 1;
  private static final int KIND_CREATE = 2;
  private static final int KIND_OLDER = 3;
  private static final int KIND_DEVICE = 4;

  private static final class Req {
    final int kind;
    final CompletableFuture<Object> future;
    final List<Object> items = new ArrayList<>();

    Req(int kind, CompletableFuture<Object> future) {
      this.kind = kind;
      this.future = future;
    }
  }

  private final ScheduledThreadPoolExecutor exec;
  private volatile Thread coreThread;
  private final Dispatcher dispatch;
  private final ExecutorService ownCallbacks; // null when the app gave one
  private final ChatListener listener;
  private final TokenProvider tokens;
  private final Transport transport;
  private final boolean ownsTransport;
  private final String wsUrl;
  private final String httpBase;
  private final long t0 = System.nanoTime();

  private long h; // core
  private Transport.Socket socket; // core
  private int socketGen; // core
  private final Map<String, CompletableFuture<Ack>> sends = new HashMap<>(); // core
  private final Map<Integer, Req> requests = new HashMap<>(); // core
  private int responding = -1; // core: the request whose answer is being fed
  private ScheduledFuture<?> timer; // core
  private long timerAt; // core
  private List<Runnable> out = new ArrayList<>(); // core: listener calls to hand over

  /* Every future handed out and not yet complete: close() fails those
   * whose task it skipped (completing a done future is a no-op). */
  private final java.util.Set<CompletableFuture<?>> waiting =
      java.util.Collections.newSetFromMap(
          new java.util.concurrent.ConcurrentHashMap<CompletableFuture<?>, Boolean>());
  private final AtomicBoolean closed = new AtomicBoolean();
  private final CountDownLatch freed = new CountDownLatch(1);
  private volatile ConnectionState state = ConnectionState.IDLE;
  private volatile Hello hello;

  Core(ChatClient.Builder b) {
    int n = SEQ.incrementAndGet();
    this.listener = b.listener != null ? b.listener : new ChatListener() {};
    this.tokens = b.tokenProvider;
    if (b.callbackExecutor != null) {
      this.ownCallbacks = null;
      this.dispatch = new Dispatcher(b.callbackExecutor);
    } else {
      this.ownCallbacks = Executors.newSingleThreadExecutor(daemon("libchat-callbacks-" + n));
      this.dispatch = new Dispatcher(ownCallbacks);
    }
    this.transport = b.transport != null ? b.transport : defaultTransport();
    this.ownsTransport = b.transport == null || b.closeTransport;
    String[] urls = urls(b.url);
    this.wsUrl = urls[0];
    this.httpBase = urls[1];
    this.exec = new ScheduledThreadPoolExecutor(1, r -> {
      Thread t = new Thread(r, "libchat-core-" + n);
      t.setDaemon(true);
      coreThread = t;
      return t;
    });
    exec.setExecuteExistingDelayedTasksAfterShutdownPolicy(false);
    exec.setRemoveOnCancelPolicy(true);

    NativeCore.load();
    int[] opts = {b.receiptIntervalMs, b.helloTimeoutMs, b.backoffBaseMs,
                  b.backoffCapMs, b.backoffFloorMs, b.stableAfterMs,
                  b.restPageLimit, b.typingIdleMs, b.typingExpireMs};
    String store = b.storePath != null ? b.storePath : ":memory:";
    final String token = b.token;
    Callable<Void> create = () -> {
      h = NativeCore.create(this, store, opts, b.manualDelivered);
      if (token != null) {
        try {
          NativeCore.setToken(h, token, now());
        } catch (RuntimeException e) {
          NativeCore.free(h);
          h = 0;
          throw e;
        }
      }
      return null;
    };
    Throwable failure = null;
    try {
      exec.submit(create).get();
    } catch (java.util.concurrent.ExecutionException e) {
      failure = e.getCause();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      failure = new ChatException(ChatException.STATE, "CHAT_ERR_STATE", "interrupted");
      exec.execute(this::finish); // frees the client once created
    }
    if (failure != null) {
      closed.set(true);
      shutdownThreads();
      if (failure instanceof RuntimeException) {
        throw (RuntimeException) failure;
      }
      throw new ChatException(ChatException.FATAL, "CHAT_ERR_FATAL", String.valueOf(failure));
    }
  }

  private static ThreadFactory daemon(String name) {
    AtomicInteger k = new AtomicInteger();
    return r -> {
      Thread t = new Thread(r, name + (name.endsWith("complete") ? "-" + k.incrementAndGet() : ""));
      t.setDaemon(true);
      return t;
    };
  }

  private static Transport defaultTransport() {
    String[] candidates = {"org.libchat.OkHttpTransport", "org.libchat.JdkTransport"};
    for (String name : candidates) {
      try {
        return (Transport) Class.forName(name).getDeclaredConstructor().newInstance();
      } catch (Throwable t) {
        // not on this platform (OkHttp missing, or no java.net.http)
      }
    }
    throw new IllegalStateException("no Transport: add OkHttp, or give one to the builder");
  }

  /* ws URL and HTTP base from "ws://host:port[/path]". */
  static String[] urls(String url) {
    if (url == null) {
      throw new IllegalArgumentException("url: required (ws://host:port or wss://...)");
    }
    java.net.URI u = java.net.URI.create(url);
    String scheme = u.getScheme();
    boolean tls;
    if ("ws".equals(scheme) || "http".equals(scheme)) {
      tls = false;
    } else if ("wss".equals(scheme) || "https".equals(scheme)) {
      tls = true;
    } else {
      throw new IllegalArgumentException("url: " + url + " is not ws://, wss://, http:// or https://");
    }
    if (u.getHost() == null) {
      throw new IllegalArgumentException("url: " + url + " has no host");
    }
    String authority = u.getRawAuthority();
    String path = u.getRawPath();
    if (path == null || path.isEmpty() || "/".equals(path)) {
      path = "/chat/v1/ws";
    }
    return new String[] {(tls ? "wss://" : "ws://") + authority + path,
                         (tls ? "https://" : "http://") + authority};
  }

  long now() {
    return (System.nanoTime() - t0) / 1_000_000L + 1;
  }

  ConnectionState state() {
    return state;
  }

  Hello hello() {
    return hello;
  }

  boolean isClosed() {
    return closed.get();
  }

  // ------------------------------------------------------------------
  // Running work on the core thread

  /** Run r on the core thread (then pump the results out); false when closed. */
  boolean post(Runnable r) {
    if (closed.get()) {
      return false;
    }
    try {
      exec.execute(() -> run(r));
      return true;
    } catch (RejectedExecutionException e) {
      return false;
    }
  }

  private void run(Runnable r) {
    if (h == 0 || closed.get()) {
      return; // closing: what is queued is skipped (its future fails)
    }
    try {
      r.run();
    } catch (Throwable t) {
      LOG.log(Level.WARNING, "libchat: core task failed", t);
    } finally {
      after();
    }
  }

  /* After every native call: a dead client is freed, the timer re-armed,
   * the listener calls handed to the dispatcher. */
  private void after() {
    if (h == 0) {
      return;
    }
    if (NativeCore.isDead(h)) {
      String why = NativeCore.errmsg(h);
      emit(() -> listener.onError(new ChatError(ChatException.FATAL, "CHAT_ERR_FATAL",
          null, null, null, "the client failed and was shut down: " + why, 0, false, -1)));
      flush();
      finish();
      return;
    }
    rearm();
    flush();
  }

  private void flush() {
    if (out.isEmpty()) {
      return;
    }
    List<Runnable> calls = out;
    out = new ArrayList<>();
    dispatch.submitAll(calls);
  }

  private void rearm() {
    long d = NativeCore.nextDeadline(h);
    if (d < 0) {
      if (timer != null) {
        timer.cancel(false);
        timer = null;
      }
      return;
    }
    if (timer != null && timerAt <= d) {
      return; // fires no later than needed
    }
    if (timer != null) {
      timer.cancel(false);
    }
    timerAt = d;
    try {
      timer = exec.schedule(() -> {
        timer = null;
        run(() -> NativeCore.onTimer(h, now()));
      }, Math.max(0, d - now()), TimeUnit.MILLISECONDS);
    } catch (RejectedExecutionException e) {
      timer = null; // closing
    }
  }

  private void emit(Runnable call) {
    out.add(call);
  }

  static <T> void completeLater(CompletableFuture<T> f, T v) {
    try {
      COMPLETE.execute(() -> f.complete(v));
    } catch (RejectedExecutionException e) {
      f.complete(v);
    }
  }

  static void failLater(CompletableFuture<?> f, Throwable t) {
    try {
      COMPLETE.execute(() -> f.completeExceptionally(t));
    } catch (RejectedExecutionException e) {
      f.completeExceptionally(t);
    }
  }

  private <T> CompletableFuture<T> future() {
    final CompletableFuture<T> f = new CompletableFuture<>();
    waiting.add(f);
    f.whenComplete((v, e) -> waiting.remove(f));
    return f;
  }

  /** The value of c, computed on the core thread. */
  <T> CompletableFuture<T> call(Callable<T> c) {
    CompletableFuture<T> f = future();
    if (!post(() -> {
      try {
        completeLater(f, c.call());
      } catch (Throwable t) {
        failLater(f, t);
      }
    })) {
      f.completeExceptionally(ChatException.closed());
    }
    return f;
  }

  // ------------------------------------------------------------------
  // The app's calls

  void start() {
    post(() -> NativeCore.start(h, now()));
  }

  void stop() {
    post(() -> NativeCore.stop(h, now()));
  }

  void hintNetworkUp() {
    post(() -> NativeCore.hintNetworkUp(h, now()));
  }

  CompletableFuture<Void> setToken(String token) {
    return call(() -> {
      NativeCore.setToken(h, token, now());
      return null;
    });
  }

  CompletableFuture<Ack> send(String conversationId, String body) {
    CompletableFuture<Ack> f = future();
    byte[] b = body.getBytes(StandardCharsets.UTF_8);
    if (!post(() -> {
      try {
        String id = NativeCore.send(h, conversationId, b, now());
        sends.put(id, f);
      } catch (Throwable t) {
        failLater(f, t);
      }
    })) {
      f.completeExceptionally(ChatException.closed());
    }
    return f;
  }

  @SuppressWarnings("unchecked")
  private <T> CompletableFuture<T> request(int kind, Callable<Integer> start) {
    CompletableFuture<Object> f = future();
    if (!post(() -> {
      try {
        int id = start.call();
        requests.put(id, new Req(kind, f));
      } catch (Throwable t) {
        failLater(f, t);
      }
    })) {
      f.completeExceptionally(ChatException.closed());
    }
    return (CompletableFuture<T>) (CompletableFuture<?>) f;
  }

  CompletableFuture<List<Conversation>> fetchConversations() {
    return request(KIND_CONVERSATIONS, () -> NativeCore.fetchConversations(h, now()));
  }

  CompletableFuture<Conversation> createConversation(String name, String[] members) {
    byte[] n = name == null ? null : name.getBytes(StandardCharsets.UTF_8);
    return request(KIND_CREATE, () -> NativeCore.createConversation(h, n, members, now()));
  }

  CompletableFuture<List<Message>> loadOlder(String conv, long before, int limit) {
    return request(KIND_OLDER, () -> NativeCore.loadOlder(h, conv, before, limit, now()));
  }

  CompletableFuture<Void> registerDevice(String platform, String pushToken) {
    byte[] t = pushToken.getBytes(StandardCharsets.UTF_8);
    return request(KIND_DEVICE, () -> NativeCore.registerDevice(h, platform, t, now()));
  }

  CompletableFuture<Void> markDelivered(String conv, long upTo) {
    return call(() -> {
      NativeCore.markDelivered(h, conv, upTo, now());
      return null;
    });
  }

  CompletableFuture<Void> markRead(String conv, long upTo) {
    return call(() -> {
      NativeCore.markRead(h, conv, upTo, now());
      return null;
    });
  }

  CompletableFuture<Void> typing(String conv) {
    return call(() -> {
      NativeCore.typing(h, conv, now());
      return null;
    });
  }

  CompletableFuture<Void> watchPresence(String[] users) {
    return call(() -> {
      NativeCore.watchPresence(h, users, now());
      return null;
    });
  }

  CompletableFuture<List<StoredMessage>> messages(String conv, long before, int limit) {
    return call(() -> {
      final List<StoredMessage> rows = new ArrayList<>();
      NativeCore.listMessages(h, conv, before, limit, new Collector() {
        @Override
        public void message(Message m, boolean own, boolean pending, int st) {
          rows.add(new StoredMessage(m, own, pending, ReceiptState.of(st)));
        }

        @Override
        public void conversation(Conversation c) {}
      });
      return rows;
    });
  }

  CompletableFuture<List<Conversation>> conversations() {
    return call(() -> {
      final List<Conversation> rows = new ArrayList<>();
      NativeCore.listConversations(h, new Collector() {
        @Override
        public void message(Message m, boolean own, boolean pending, int st) {}

        @Override
        public void conversation(Conversation c) {
          rows.add(c);
        }
      });
      return rows;
    });
  }

  CompletableFuture<Long> lastSeen(String conv) {
    return call(() -> NativeCore.lastSeen(h, conv));
  }

  CompletableFuture<Integer> outboxSize() {
    return call(() -> NativeCore.outboxLen(h));
  }

  // ------------------------------------------------------------------
  // Closing

  /**
   * Stop every callback, then free the native client on the core thread.
   * Waits for the free unless called on the core thread or by the cleaner.
   */
  void close(boolean fromCleaner) {
    boolean onCore = Thread.currentThread() == coreThread;
    if (!closed.compareAndSet(false, true)) {
      if (!onCore && !fromCleaner && !dispatch.isCallingThread()) {
        awaitFreed();
      }
      return;
    }
    dispatch.close();
    if (onCore) {
      finish();
    } else {
      try {
        exec.execute(this::finish);
      } catch (RejectedExecutionException e) {
        // the executor is gone already (construction failed)
      }
    }
    exec.shutdown();
    if (!onCore && !fromCleaner) {
      awaitFreed();
    }
  }

  private void awaitFreed() {
    try {
      if (!freed.await(30, TimeUnit.SECONDS)) {
        LOG.warning("libchat: the core thread did not free the client within 30 s");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /* Core thread: drop the socket, free the native client (it calls nothing
   * back), fail what still waits. */
  private void finish() {
    if (h == 0) {
      for (CompletableFuture<?> f : waiting.toArray(new CompletableFuture<?>[0])) {
        failLater(f, ChatException.closed());
      }
      shutdownThreads();
      freed.countDown();
      return;
    }
    closed.set(true);
    dispatch.shut(); // no wait: close() may be waiting for us from a listener call
    if (timer != null) {
      timer.cancel(false);
      timer = null;
    }
    socketGen++;
    if (socket != null) {
      try {
        socket.close(1000);
      } catch (Throwable t) {
        LOG.log(Level.FINE, "libchat: closing the socket", t);
      }
      socket = null;
    }
    NativeCore.free(h);
    h = 0;
    out.clear();
    ChatException gone = ChatException.closed();
    for (CompletableFuture<Ack> f : sends.values()) {
      failLater(f, new ChatException(ChatException.STATE, "CHAT_ERR_STATE",
          "the client was closed before the ack; the message stays in the outbox"
          + " and goes out when a client is opened over the same store"));
    }
    sends.clear();
    for (Req r : requests.values()) {
      failLater(r.future, gone);
    }
    requests.clear();
    for (CompletableFuture<?> f : waiting.toArray(new CompletableFuture<?>[0])) {
      failLater(f, gone);
    }
    if (ownsTransport) {
      try {
        transport.close();
      } catch (Throwable t) {
        LOG.log(Level.FINE, "libchat: closing the transport", t);
      }
    }
    shutdownThreads();
    freed.countDown();
  }

  private void shutdownThreads() {
    exec.shutdown();
    if (ownCallbacks != null) {
      ownCallbacks.shutdown();
    }
  }

  // ------------------------------------------------------------------
  // NativeEvents: on the core thread, inside a native call. Record, queue,
  // never call a native method, never throw.

  @Override
  void onConnection(int s) {
    ConnectionState cs = ConnectionState.of(s);
    state = cs;
    emit(() -> listener.onConnectionState(cs));
  }

  @Override
  void onHello(String userId, String deviceId, String sessionId, long serverTs,
               int heartbeatMs, int maxBodyBytes) {
    Hello hl = new Hello(userId, deviceId, sessionId, heartbeatMs, maxBodyBytes);
    hello = hl;
    emit(() -> listener.onHello(hl));
  }

  private Req responding(int kind) {
    if (responding < 0) {
      return null;
    }
    Req r = requests.get(responding);
    return r != null && r.kind == kind ? r : null;
  }

  @Override
  void onMessage(Message m, int origin) {
    Origin o = Origin.of(origin);
    if (o == Origin.OLDER) {
      Req r = responding(KIND_OLDER);
      if (r != null) {
        r.items.add(m);
      }
    }
    emit(() -> listener.onMessage(m, o));
  }

  @Override
  void onAck(String clientMsgId, long messageId, long serverTs, boolean duplicate) {
    Ack a = new Ack(clientMsgId, messageId, serverTs, duplicate);
    emit(() -> listener.onAck(a));
    CompletableFuture<Ack> f = sends.remove(clientMsgId);
    if (f != null) {
      completeLater(f, a);
    }
  }

  @Override
  void onReceipt(String conv, long messageId, int st, String member, boolean hasCounts,
                 int delivered, int read) {
    Receipt r = new Receipt(conv, messageId, ReceiptState.of(st), member, hasCounts,
        delivered, read);
    emit(() -> listener.onReceipt(r));
  }

  @Override
  void onTyping(String conv, String user, boolean typing) {
    emit(() -> listener.onTyping(conv, user, typing));
  }

  @Override
  void onPresence(String user, int st, long lastActive) {
    Presence.State[] all = Presence.State.values();
    Presence p = new Presence(user, st >= 0 && st < all.length ? all[st]
        : Presence.State.OFFLINE, lastActive);
    emit(() -> listener.onPresence(p));
  }

  @Override
  void onStateChange(String conv, long lastRead) {
    emit(() -> listener.onReadSync(conv, lastRead));
  }

  @Override
  void onConversation(Conversation c) {
    Req r = responding(KIND_CONVERSATIONS);
    if (r == null) {
      r = responding(KIND_CREATE);
    }
    if (r != null) {
      r.items.add(c);
    }
    emit(() -> listener.onConversation(c));
  }

  @Override
  void onError(int err, String errName, String wireCode, String clientMsgId, String conv,
               String message, int httpStatus, boolean retrying, long retryAfterMs) {
    ChatError e = new ChatError(err, errName, wireCode, clientMsgId, conv, message,
        httpStatus, retrying, retryAfterMs);
    emit(() -> listener.onError(e));
    if (clientMsgId != null && !retrying) {
      CompletableFuture<Ack> f = sends.remove(clientMsgId);
      if (f != null) {
        failLater(f, new ChatException(err != 0 ? err : ChatException.INVAL,
            err != 0 ? errName : "CHAT_ERR_INVAL",
            (wireCode != null ? wireCode + ": " : "") + message));
      }
    }
  }

  @Override
  void onResumeProgress(String conv, int gapsOpen, int messages, boolean resumed,
                        boolean complete) {
    ResumeProgress p = new ResumeProgress(conv, gapsOpen, messages, resumed, complete);
    emit(() -> listener.onResumeProgress(p));
  }

  @Override
  void onRequestDone(int id, int result, String detail) {
    Req r = requests.remove(id);
    if (r == null) {
      return;
    }
    if (result != 0) {
      failLater(r.future, new ChatException(result, NativeCore.errName(result),
          detail == null || detail.isEmpty() ? "the request failed" : detail));
      return;
    }
    Object v;
    switch (r.kind) {
      case KIND_CREATE:
        v = r.items.isEmpty() ? null : r.items.get(r.items.size() - 1);
        break;
      case KIND_DEVICE:
        v = null;
        break;
      default:
        v = java.util.Collections.unmodifiableList(r.items);
    }
    completeLater(r.future, v);
  }

  @Override
  void onAuthRequired(int reason) {
    AuthReason why = AuthReason.of(reason);
    emit(() -> {
      listener.onAuthRequired(why);
      if (tokens != null && !closed.get()) {
        String t;
        try {
          t = tokens.freshToken(why);
        } catch (Exception e) {
          LOG.log(Level.WARNING, "libchat: the TokenProvider failed", e);
          return;
        }
        if (t != null) {
          setToken(t);
        }
      }
    });
  }

  // The transport work --------------------------------------------------

  @Override
  void connect(String token) {
    final int gen = ++socketGen;
    try {
      socket = transport.connect(wsUrl, token, new SocketEvents(gen));
    } catch (Throwable t) {
      LOG.log(Level.FINE, "libchat: connect failed", t);
      socket = null;
      post(() -> {
        if (gen == socketGen) {
          socketGen++;
          NativeCore.onClose(h, 0, now());
        }
      });
    }
  }

  @Override
  void write(byte[] frame) {
    if (socket != null) {
      socket.send(new String(frame, StandardCharsets.UTF_8));
    }
  }

  @Override
  void closeSocket() {
    socketGen++; // nothing from that socket reaches the client any more
    if (socket != null) {
      Transport.Socket s = socket;
      socket = null;
      try {
        s.close(1000);
      } catch (Throwable t) {
        LOG.log(Level.FINE, "libchat: closing the socket", t);
      }
    }
  }

  @Override
  void request(int id, String method, String path, byte[] body, String token) {
    Transport.ResponseListener answer = (status, resp) -> post(() -> {
      responding = id;
      try {
        NativeCore.onResponse(h, id, status, resp, now());
      } finally {
        responding = -1;
      }
    });
    try {
      transport.request(method, httpBase + path, token, body, answer);
    } catch (Throwable t) {
      LOG.log(Level.FINE, "libchat: request failed to start", t);
      answer.onResponse(0, null);
    }
  }

  /** One socket's events, handed to the core thread; stale ones are dropped. */
  private final class SocketEvents implements Transport.SocketListener {
    private final int gen;

    SocketEvents(int gen) {
      this.gen = gen;
    }

    @Override
    public void onOpen() {
      post(() -> {
        if (gen == socketGen) {
          NativeCore.onOpen(h, now());
        }
      });
    }

    @Override
    public void onText(String text) {
      byte[] b = text.getBytes(StandardCharsets.UTF_8);
      post(() -> {
        if (gen == socketGen) {
          NativeCore.onFrame(h, b, now());
        }
      });
    }

    @Override
    public void onClosed(int code) {
      post(() -> {
        if (gen == socketGen) {
          socketGen++;
          socket = null;
          NativeCore.onClose(h, code, now());
        }
      });
    }

    @Override
    public void onRefused(int httpStatus) {
      post(() -> {
        if (gen == socketGen) {
          socketGen++;
          socket = null;
          NativeCore.onRefused(h, httpStatus, now());
        }
      });
    }

    @Override
    public void onFailure(Throwable cause) {
      onClosed(0);
    }
  }
}
