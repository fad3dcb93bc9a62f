package org.libchat;

import java.util.Collection;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import org.libchat.Events.Ack;
import org.libchat.Events.ConnectionState;
import org.libchat.Events.Hello;
import org.libchat.Events.StoredMessage;

/**
 * One logged-in device on a chat.v1 server: libchat's sans-I/O client core
 * (through JNI) with a local SQLite store, driven by a {@link Transport}.
 *
 * <pre>{@code
 * try (ChatClient c = ChatClient.builder("ws://127.0.0.1:8080")
 *         .store(new File(dir, "chat.db").getPath())
 *         .token(token)
 *         .tokenProvider(reason -> login())
 *         .listener(new ChatListener() {
 *           public void onMessage(Message m, Events.Origin o) { show(m); }
 *         })
 *         .callbackExecutor(mainThreadExecutor)
 *         .build()) {
 *   c.start();
 *   c.send("conv1", "hello").thenAccept(ack -> ...);
 * }
 * }</pre>
 *
 * <p>Threads: every method may be called from any thread and returns at
 * once; the work runs on the client's own core thread, which alone touches
 * the native client. Listener calls run on the callback executor, one at a
 * time, in order. Futures complete on a small shared pool (not the core
 * thread, not the callback executor), so chain with {@code *Async(...,
 * executor)} to get back to a UI thread.
 *
 * <p>Sends are durable: {@link #send} writes the message to the store's
 * outbox before its future can fail for connection reasons, and the client
 * sends it (again, with the same id) until the server acks it, across
 * reconnects and restarts over the same store.
 *
 * <p>{@link #close()} frees everything (the native client, its global
 * references, threads it made, the transport it made); after it returns no
 * listener method is called. A client that is never closed is freed once
 * unreachable (a safety net, not a plan: a listener that refers to its
 * client keeps it reachable while its core thread lives).
 */
public final class ChatClient implements AutoCloseable {
  private final Core core;
  private final SafetyNet.Cleanable cleanable;

  private ChatClient(Builder b) {
    this.core = new Core(b);
    final Core c = core; // the action must not refer to this ChatClient
    this.cleanable = SafetyNet.register(this, () -> c.close(true));
  }

  /** A builder for a client of the server at {@code url} (ws://host:port, wss://...). */
  public static Builder builder(String url) {
    return new Builder(url);
  }

  /** The libchat version actually loaded ("1.0.0"). */
  public static String libraryVersion() {
    NativeCore.load();
    return NativeCore.version();
  }

  /** Connect, and keep connected (reconnecting with backoff) until {@link #stop()}. */
  public void start() {
    core.start();
  }

  /** Close the connection gracefully and stop reconnecting; the outbox stays. */
  public void stop() {
    core.stop();
  }

  /** The OS says the network is back: skip the rest of a backoff wait. */
  public void hintNetworkUp() {
    core.hintNetworkUp();
  }

  /**
   * Hand over a fresh bearer token. While {@link ConnectionState#UNAUTHORIZED},
   * the client then reconnects and resumes at once.
   */
  public CompletableFuture<Void> setToken(String token) {
    return core.setToken(token);
  }

  /**
   * Send a text message. It is in the outbox when the future's first stage
   * runs; the future completes with the server's ack (once), or fails when
   * the server refuses the message for good (or the client closes first:
   * then the message stays in the outbox for the next client on the store).
   */
  public CompletableFuture<Ack> send(String conversationId, String body) {
    return core.send(conversationId, body);
  }

  /** This device has every message up to {@code upTo} (automatic unless manualDelivered). */
  public CompletableFuture<Void> markDelivered(String conversationId, long upTo) {
    return core.markDelivered(conversationId, upTo);
  }

  /** The user read up to {@code upTo}; the senders get read receipts. */
  public CompletableFuture<Void> markRead(String conversationId, long upTo) {
    return core.markRead(conversationId, upTo);
  }

  /** Call on every keystroke; the client paces the typing frames. */
  public CompletableFuture<Void> typing(String conversationId) {
    return core.typing(conversationId);
  }

  /** The users whose presence to report (those on screen, at most 100). */
  public CompletableFuture<Void> watchPresence(Collection<String> userIds) {
    return core.watchPresence(userIds.toArray(new String[0]));
  }

  /** The conversation list from the server (also stored and reported to the listener). */
  public CompletableFuture<List<Conversation>> fetchConversations() {
    return core.fetchConversations();
  }

  /** Create (or find) the direct conversation with {@code userId}. */
  public CompletableFuture<Conversation> createDirect(String userId) {
    return core.createConversation(null, new String[] {userId});
  }

  /** Create a group; the caller is its first admin. */
  public CompletableFuture<Conversation> createGroup(String name, Collection<String> members) {
    if (name == null) {
      throw new IllegalArgumentException("name: required for a group");
    }
    return core.createConversation(name, members.toArray(new String[0]));
  }

  /**
   * Page older history from the server: up to {@code limit} messages before
   * {@code before} (0: the newest). New ones are stored and reported
   * (origin OLDER); the future has the page's messages new to this device.
   */
  public CompletableFuture<List<Message>> loadOlder(String conversationId, long before, int limit) {
    return core.loadOlder(conversationId, before, limit);
  }

  /** Register this device's push token ("apns", "fcm" or "webpush"). */
  public CompletableFuture<Void> registerDevice(String platform, String pushToken) {
    return core.registerDevice(platform, pushToken);
  }

  /** Stored messages (local, no network): up to {@code limit} before {@code before}, oldest first, then unacked sends. */
  public CompletableFuture<List<StoredMessage>> messages(String conversationId, long before, int limit) {
    return core.messages(conversationId, before, limit);
  }

  /** Stored conversations, most recent first (local). */
  public CompletableFuture<List<Conversation>> conversations() {
    return core.conversations();
  }

  /** The newest message id this device holds without a gap (local). */
  public CompletableFuture<Long> lastSeen(String conversationId) {
    return core.lastSeen(conversationId);
  }

  /** Sends not yet acked. */
  public CompletableFuture<Integer> outboxSize() {
    return core.outboxSize();
  }

  /** The connection state as last reported. */
  public ConnectionState state() {
    return core.state();
  }

  /** The server's last {@code hello} (who we are), or null before the first. */
  public Hello hello() {
    return core.hello();
  }

  /**
   * Free everything. Safe during traffic, from any thread, also from a
   * listener method; idempotent. Unacked sends stay in the store's outbox.
   * Their futures fail; no listener method is called after this returns.
   */
  @Override
  public void close() {
    core.close(false);
    cleanable.clean();
  }

  /** Native clients alive in this process (for tests and leak checks). */
  public static long liveNativeClients() {
    NativeCore.load();
    return NativeCore.liveHandles();
  }

  /** JNI global references held by native clients (for tests and leak checks). */
  public static long liveGlobalRefs() {
    NativeCore.load();
    return NativeCore.liveGlobalRefs();
  }

  /** How to make a {@link ChatClient}. */
  public static final class Builder {
    final String url;
    String storePath;
    String token;
    TokenProvider tokenProvider;
    ChatListener listener;
    Executor callbackExecutor;
    Transport transport;
    boolean closeTransport;
    boolean manualDelivered;
    int receiptIntervalMs;
    int helloTimeoutMs;
    int backoffBaseMs;
    int backoffCapMs;
    int backoffFloorMs = -1;
    int stableAfterMs;
    int restPageLimit;
    int typingIdleMs;
    int typingExpireMs;

    Builder(String url) {
      Core.urls(url); // refuse a bad URL now
      this.url = url;
    }

    /** The local store: a SQLite file (default ":memory:", which forgets on close). */
    public Builder store(String path) {
      this.storePath = path;
      return this;
    }

    /** The bearer token to start with. */
    public Builder token(String token) {
      this.token = token;
      return this;
    }

    /** Asked for a fresh token when the server refuses or expires the current one. */
    public Builder tokenProvider(TokenProvider p) {
      this.tokenProvider = p;
      return this;
    }

    public Builder listener(ChatListener l) {
      this.listener = l;
      return this;
    }

    /** Where listener methods run (default: a thread of the client's own). */
    public Builder callbackExecutor(Executor e) {
      this.callbackExecutor = e;
      return this;
    }

    /**
     * The transport (default: an {@link OkHttpTransport} when OkHttp is on
     * the class path, else a {@link JdkTransport}; the client closes the
     * default one). A transport given here is the app's, unless
     * {@code closeWithClient} is true.
     */
    public Builder transport(Transport t, boolean closeWithClient) {
      this.transport = t;
      this.closeTransport = closeWithClient;
      return this;
    }

    public Builder transport(Transport t) {
      return transport(t, false);
    }

    /** Only the app's {@link ChatClient#markDelivered} calls mark delivered. */
    public Builder manualDelivered(boolean manual) {
      this.manualDelivered = manual;
      return this;
    }

    /** Reconnect backoff: first ceiling, cap and floor in ms (full jitter). */
    public Builder backoff(int baseMs, int capMs, int floorMs) {
      this.backoffBaseMs = baseMs;
      this.backoffCapMs = capMs;
      this.backoffFloorMs = floorMs;
      return this;
    }

    /** Least time between two receipt flushes of one conversation (default 1000). */
    public Builder receiptIntervalMs(int ms) {
      this.receiptIntervalMs = ms;
      return this;
    }

    /** No {@code hello} this long after opening: reconnect (default 10000). */
    public Builder helloTimeoutMs(int ms) {
      this.helloTimeoutMs = ms;
      return this;
    }

    /** Messages per REST page when closing a gap (default 200). */
    public Builder restPageLimit(int n) {
      this.restPageLimit = n;
      return this;
    }

    /** Build the client (not yet started: call {@link ChatClient#start()}). */
    public ChatClient build() {
      return new ChatClient(this);
    }
  }
}
