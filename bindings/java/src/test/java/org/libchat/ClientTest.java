package org.libchat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;
import org.libchat.Events.Ack;
import org.libchat.Events.AuthReason;
import org.libchat.Events.ConnectionState;
import org.libchat.Events.Origin;
import org.libchat.Events.Presence;
import org.libchat.Events.Receipt;
import org.libchat.Events.ReceiptState;
import org.libchat.Events.StoredMessage;

/**
 * The client against a real chatd, once per transport: the same tests,
 * parametrized, never copied. Every test ends with no native client and no
 * JNI global reference left (checked after closing what it opened).
 */
@ParameterizedClass(name = "{0}")
@EnumSource(TransportKind.class)
class ClientTest {
  private static final long T = 30; // seconds for anything that takes milliseconds

  @Parameter
  TransportKind kind;

  @TempDir
  Path tmp;

  private final List<AutoCloseable> opened = new ArrayList<>();

  private Chatd chatd(String... extra) throws Exception {
    Chatd c = new Chatd(tmp, extra).start();
    opened.add(c);
    return c;
  }

  private ChatClient.Builder builder(Chatd d, String user, String device) throws Exception {
    return ChatClient.builder(d.url())
        .token(d.token(user, device))
        .transport(kind.make(), true)
        .backoff(200, 1000, 50);
  }

  private ChatClient open(ChatClient.Builder b) {
    ChatClient c = b.build();
    opened.add(c);
    c.start();
    return c;
  }

  private ChatClient open(Chatd d, String user, Recorder r) throws Exception {
    return open(builder(d, user, user + "-phone").listener(r));
  }

  private static <V> V get(CompletableFuture<V> f) throws Exception {
    return f.get(T, TimeUnit.SECONDS);
  }

  private static void ready(ChatClient c) throws InterruptedException {
    Recorder.await("READY (now " + c.state() + ")", () -> c.state() == ConnectionState.READY);
  }

  @AfterEach
  void closeAndCheckLeaks() throws Exception {
    Collections.reverse(opened);
    for (AutoCloseable c : opened) {
      c.close();
    }
    assertEquals(0, ChatClient.liveNativeClients(), "native clients left after close()");
    assertEquals(0, ChatClient.liveGlobalRefs(), "JNI global references left after close()");
  }

  @Test
  void twoUsersChatWithDeliveredAndReadReceipts() throws Exception {
    Chatd d = chatd();
    Recorder ra = new Recorder();
    Recorder rb = new Recorder();
    ChatClient a = open(d, "alice", ra);
    ChatClient b = open(d, "bob", rb);
    ready(a);
    ready(b);
    assertEquals("alice", a.hello().userId);

    Conversation conv = get(a.createDirect("bob"));
    assertNotNull(conv);
    assertFalse(conv.group);
    assertEquals(new HashSet<>(Arrays.asList("alice", "bob")), new HashSet<>(conv.members));
    String cid = conv.conversationId;

    // Presence and typing of the peer.
    get(a.watchPresence(Collections.singletonList("bob")));
    Recorder.await("bob online", () -> ra.presence.stream().anyMatch(
        p -> p.userId.equals("bob") && p.state == Presence.State.ONLINE));
    get(b.typing(cid));
    Recorder.await("bob typing", () -> ra.typing.contains("bob:true"));

    // UTF-8 beyond the BMP and U+0000 cross JNI intact.
    String body = "hello \uD83D\uDE00 caf\u00e9 \u0000 end";
    Ack ack = get(a.send(cid, body));
    assertTrue(ack.messageId > 0);
    assertFalse(ack.duplicate);
    Recorder.await("bob gets it", () -> rb.messages.size() == 1);
    Message m = rb.messages.get(0);
    assertEquals(body, m.body);
    assertEquals("alice", m.senderId);
    assertEquals(ack.messageId, m.messageId);
    assertEquals(Origin.LIVE, rb.origins.get(0));

    // bob's client marks delivered by itself; read is the app's call.
    Recorder.await("delivered receipt", () -> ra.receipts.stream().anyMatch(
        r -> r.state == ReceiptState.DELIVERED && r.messageId == ack.messageId
            && "bob".equals(r.memberId)));
    get(b.markRead(cid, m.messageId));
    Recorder.await("read receipt", () -> ra.receipts.stream().anyMatch(
        r -> r.state == ReceiptState.READ && r.messageId == ack.messageId));
    Recorder.await("stored state READ", () -> {
      try {
        List<StoredMessage> rows = get(a.messages(cid, 0, 10));
        return rows.size() == 1 && rows.get(0).own && rows.get(0).state == ReceiptState.READ;
      } catch (Exception e) {
        throw new AssertionError(e);
      }
    });

    // The reply, and both sides' local stores.
    get(b.send(cid, "hi alice"));
    Recorder.await("alice gets the reply", () -> ra.messages.size() == 1);
    assertEquals("hi alice", ra.messages.get(0).body);
    List<StoredMessage> rows = get(b.messages(cid, 0, 10));
    assertEquals(2, rows.size());
    assertEquals(body, rows.get(0).message.body);
    assertFalse(rows.get(0).own);
    assertTrue(rows.get(1).own);
    assertEquals(ra.messages.get(0).messageId, (long) get(a.lastSeen(cid)));

    List<Conversation> listed = get(b.fetchConversations());
    assertTrue(listed.stream().anyMatch(c -> c.conversationId.equals(cid)), listed.toString());
    assertTrue(get(b.conversations()).stream().anyMatch(c -> c.conversationId.equals(cid)));

    // Listener calls ran on the client's own callback thread, never the core's.
    for (String t : ra.threads) {
      assertTrue(t.startsWith("libchat-callbacks-"), t);
    }
  }

  @Test
  void groupReceiptsCarryCounts() throws Exception {
    Chatd d = chatd();
    Recorder ra = new Recorder();
    ChatClient a = open(d, "alice", ra);
    ChatClient b = open(d, "bob", new Recorder());
    ChatClient c = open(d, "carol", new Recorder());
    ready(a);
    Conversation g = get(a.createGroup("team \u2615", Arrays.asList("bob", "carol")));
    assertTrue(g.group);
    assertEquals("team \u2615", g.name);
    Ack ack = get(a.send(g.conversationId, "standup"));
    ready(b);
    ready(c);
    get(b.markRead(g.conversationId, ack.messageId));
    get(c.markRead(g.conversationId, ack.messageId));
    Recorder.await("read by both, with counts", () -> ra.receipts.stream().anyMatch(
        r -> r.hasCounts && r.readCount == 2 && r.messageId == ack.messageId));
  }

  @Test
  void historyPagingAndPushDeviceRegistration() throws Exception {
    Path pushLog = tmp.resolve("push.log");
    Chatd d = chatd("--push-log", pushLog.toString());
    Recorder ra = new Recorder();
    ChatClient a = open(d, "alice", ra);
    ready(a);
    String cid = get(a.createDirect("bob")).conversationId;
    List<Long> ids = new ArrayList<>();
    for (int i = 0; i < 25; i++) {
      ids.add(get(a.send(cid, "m" + i)).messageId);
    }

    // A new device of bob (an empty store) pages history from the server.
    Recorder rb = new Recorder();
    ChatClient b = open(builder(d, "bob", "bob-tablet").listener(rb));
    ready(b);
    List<Message> page1 = get(b.loadOlder(cid, 0, 10));
    assertEquals(10, page1.size());
    assertEquals(ids.get(24), (Long) page1.get(page1.size() - 1).messageId);
    long oldest = page1.stream().mapToLong(x -> x.messageId).min().getAsLong();
    List<Message> page2 = get(b.loadOlder(cid, oldest, 10));
    assertEquals(10, page2.size());
    assertTrue(page2.stream().allMatch(x -> x.messageId < oldest));
    assertEquals(20, get(b.messages(cid, 0, 100)).size());
    assertTrue(rb.origins.stream().allMatch(o -> o == Origin.OLDER));

    // Push: bob registers, goes away; alice's next message is pushed.
    get(b.registerDevice("fcm", "push-token-\u00e9-1"));
    b.close();
    get(a.send(cid, "are you there?"));
    Recorder.await("a push hand-off for bob", () -> {
      try {
        return Files.exists(pushLog)
            && new String(Files.readAllBytes(pushLog), "UTF-8").contains("bob-tablet");
      } catch (Exception e) {
        return false;
      }
    });
    try {
      b.registerDevice("fcm", "x").get(T, TimeUnit.SECONDS);
      fail("a closed client accepted a call");
    } catch (ExecutionException e) {
      assertEquals(ChatException.STATE, ((ChatException) e.getCause()).code());
    }
  }

  @Test
  void badArgumentsFailTheirFutureWithTheReason() throws Exception {
    Chatd d = chatd();
    ChatClient a = open(d, "alice", new Recorder());
    try {
      get(a.send("no spaces allowed", "x"));
      fail("a bad conversation id was accepted");
    } catch (ExecutionException e) {
      ChatException ce = (ChatException) e.getCause();
      assertEquals(ChatException.INVAL, ce.code());
      assertEquals("CHAT_ERR_INVAL", ce.codeName());
      assertTrue(ce.getMessage().contains("conversation_id"), ce.getMessage());
    }
    try {
      get(a.registerDevice("carrier-pigeon", "t"));
      fail("an unknown platform was accepted");
    } catch (ExecutionException e) {
      assertEquals(ChatException.INVAL, ((ChatException) e.getCause()).code());
    }
  }

  /** Bodies in order, each exactly once, or the assertion says what went wrong. */
  private static void assertOnceInOrder(List<String> expected, List<String> got) {
    Set<String> seen = new HashSet<>();
    for (String b : got) {
      assertTrue(seen.add(b), "received twice: " + b);
    }
    assertEquals(expected, got);
  }

  @Test
  void outboxSurvivesChatdRestartsNothingLostNothingTwice() throws Exception {
    Chatd d = chatd();
    int port = d.port;
    Path store = tmp.resolve("alice.db");
    Recorder rb = new Recorder();
    ChatClient b = open(d, "bob", rb);
    String tokenA = d.token("alice", "alice-phone");
    ChatClient.Builder ab = builder(d, "alice", "alice-phone").token(tokenA).store(store.toString());
    Recorder ra1 = new Recorder();
    ChatClient a = open(ab.listener(ra1));
    ready(a);
    ready(b);
    String cid = get(a.createDirect("bob")).conversationId;
    List<String> expected = new ArrayList<>();
    // bob holds a message of the conversation, so his resumes ask for what
    // came after it (a device with nothing resumes without `since`).
    expected.add("first");
    get(a.send(cid, "first"));
    Recorder.await("bob has the first", () -> rb.messages.size() == 1);

    // 1. chatd is down: sends wait in the outbox; the client is closed with
    // them unacked (their futures fail) and reopened over the same store.
    d.stop();
    Recorder.await("alice notices", () -> a.state() != ConnectionState.READY);
    List<CompletableFuture<Ack>> lost = new ArrayList<>();
    for (int i = 0; i < 20; i++) {
      expected.add("offline-" + i);
      lost.add(a.send(cid, "offline-" + i));
    }
    Recorder.await("20 in the outbox", () -> {
      try {
        return a.outboxSize().get() == 20;
      } catch (Exception e) {
        return false;
      }
    });
    a.close();
    for (CompletableFuture<Ack> f : lost) {
      try {
        f.get(T, TimeUnit.SECONDS);
        fail("a send was acked with the server down");
      } catch (ExecutionException e) {
        assertEquals(ChatException.STATE, ((ChatException) e.getCause()).code());
      }
    }
    d.start(port);
    Recorder ra2 = new Recorder();
    ChatClient a2 = open(ab.listener(ra2).transport(kind.make(), true));
    Recorder.await("the reopened outbox is acked", () -> ra2.acks.size() == 20);
    Recorder.await("bob has them", () -> rb.messages.size() == 21);
    assertEquals(0, (int) get(a2.outboxSize()));

    // 2. chatd is killed (SIGKILL) right after a burst: whatever it stored
    // without acking comes back as duplicate:true, and bob sees each once.
    List<CompletableFuture<Ack>> burst = new ArrayList<>();
    for (int i = 0; i < 30; i++) {
      expected.add("burst-" + i);
      burst.add(a2.send(cid, "burst-" + i));
    }
    Thread.sleep(5);
    d.kill();
    d.start(port);
    Set<Long> ids = new HashSet<>();
    for (CompletableFuture<Ack> f : burst) {
      assertTrue(ids.add(f.get(60, TimeUnit.SECONDS).messageId), "one id per send");
    }
    Recorder.await("bob has all 51", 60_000, () -> rb.messages.size() >= 51);
    Thread.sleep(300); // a duplicate would arrive about now
    assertOnceInOrder(expected, rb.bodies());
    Set<String> acked = new HashSet<>();
    for (Ack x : ra2.acks) {
      assertTrue(acked.add(x.clientMsgId), "acked twice: " + x);
    }
    assertEquals(50, acked.size()); // 20 reopened + 30 of the burst
  }

  @Test
  void resumeFillsTheGap() throws Exception {
    // A small resume cap: most of the gap comes from REST pages.
    Chatd d = chatd("--resume-max-messages", "5");
    Path store = tmp.resolve("bob.db");
    Recorder ra = new Recorder();
    ChatClient a = open(d, "alice", ra);
    ChatClient.Builder bb = builder(d, "bob", "bob-phone").store(store.toString()).restPageLimit(7);
    Recorder rb1 = new Recorder();
    ChatClient b = open(bb.listener(rb1));
    ready(a);
    ready(b);
    String cid = get(a.createDirect("bob")).conversationId;
    List<String> expected = new ArrayList<>();
    expected.add("before");
    get(a.send(cid, "before"));
    Recorder.await("bob got the first", () -> rb1.messages.size() == 1);
    b.close();

    long last = 0;
    for (int i = 0; i < 40; i++) {
      expected.add("gap-" + i);
      last = get(a.send(cid, "gap-" + i)).messageId;
    }
    Recorder rb2 = new Recorder();
    ChatClient b2 = open(bb.listener(rb2).transport(kind.make(), true));
    Recorder.await("bob caught up", () -> rb2.messages.size() == 40
        && rb2.progress.stream().anyMatch(p -> p.complete));
    List<String> got = new ArrayList<>(Collections.singletonList("before"));
    got.addAll(rb2.bodies());
    assertOnceInOrder(expected, got);
    assertTrue(rb2.origins.contains(Origin.REST), "REST paging closed the gap: " + rb2.origins);
    assertEquals(last, (long) get(b2.lastSeen(cid)));
    assertEquals(41, get(b2.messages(cid, 0, 100)).size());
  }

  @Test
  void expiredTokenIsReplacedAndTheClientRecovers() throws Exception {
    Chatd d = chatd();
    Recorder ra = new Recorder();
    AtomicInteger asked = new AtomicInteger();
    ChatClient a = open(builder(d, "alice", "alice-phone")
        .token(d.token("alice", "alice-phone", 4)) // expires on the open session
        .tokenProvider(reason -> {
          asked.incrementAndGet();
          return d.token("alice", "alice-phone", 3600);
        })
        .listener(ra));
    Recorder rb = new Recorder();
    ChatClient b = open(d, "bob", rb);
    ready(a);
    String cid = get(a.createDirect("bob")).conversationId;
    Recorder.await("4001 -> auth required", () -> ra.auth.contains(AuthReason.EXPIRED));
    assertTrue(ra.states.contains(ConnectionState.UNAUTHORIZED), ra.states.toString());
    Recorder.await("READY again", () -> ra.last() == ConnectionState.READY);
    assertEquals(1, asked.get());
    get(a.send(cid, "after the new token"));
    Recorder.await("bob gets it", () -> rb.bodies().contains("after the new token"));

    // A token the server refuses at the upgrade (401): asked again, recovers.
    Recorder rc = new Recorder();
    ChatClient c = open(builder(d, "carol", "carol-phone")
        .token("not.a-valid-token")
        .tokenProvider(reason -> reason == AuthReason.REFUSED
            ? d.token("carol", "carol-phone") : null)
        .listener(rc));
    Recorder.await("refused -> READY", () -> rc.auth.contains(AuthReason.REFUSED)
        && c.state() == ConnectionState.READY);
  }

  @Test
  void aThousandSendsFromSeveralThreadsAreAllAckedOnce() throws Exception {
    Chatd d = chatd();
    Recorder ra = new Recorder();
    Recorder rb = new Recorder();
    ChatClient a = open(d, "alice", ra);
    ChatClient b = open(d, "bob", rb);
    ready(a);
    ready(b);
    String cid = get(a.createDirect("bob")).conversationId;
    int threads = 4;
    int each = 250;
    ExecutorService pool = Executors.newFixedThreadPool(threads);
    List<CompletableFuture<Ack>> futures = Collections.synchronizedList(new ArrayList<>());
    List<java.util.concurrent.Future<?>> done = new ArrayList<>();
    for (int t = 0; t < threads; t++) {
      final int tt = t;
      done.add(pool.submit(() -> {
        for (int i = 0; i < each; i++) {
          futures.add(a.send(cid, "t" + tt + "-" + i));
        }
      }));
    }
    for (java.util.concurrent.Future<?> f : done) {
      f.get(T, TimeUnit.SECONDS);
    }
    pool.shutdown();
    Set<Long> ids = new HashSet<>();
    Set<String> cmids = new HashSet<>();
    for (CompletableFuture<Ack> f : futures) {
      Ack x = f.get(120, TimeUnit.SECONDS);
      assertTrue(ids.add(x.messageId), "message id twice: " + x);
      assertTrue(cmids.add(x.clientMsgId), "ack twice: " + x);
    }
    assertEquals(threads * each, ids.size());
    Recorder.await("every onAck", () -> ra.acks.size() >= threads * each);
    Thread.sleep(200);
    assertEquals(threads * each, ra.acks.size(), "onAck fired once per send");
    Recorder.await("bob has all", 60_000, () -> rb.messages.size() == threads * each);
    // Each thread's sends keep their order.
    for (int t = 0; t < threads; t++) {
      String p = "t" + t + "-";
      List<String> mine = new ArrayList<>();
      for (String x : rb.bodies()) {
        if (x.startsWith(p)) {
          mine.add(x);
        }
      }
      for (int i = 0; i < each; i++) {
        assertEquals(p + i, mine.get(i));
      }
    }
  }

  @Test
  void closeDuringTrafficIsSafeAndCallsNothingAfterwards() throws Exception {
    Chatd d = chatd();
    Recorder rb = new Recorder();
    AtomicBoolean aClosed = new AtomicBoolean();
    AtomicLong lateCalls = new AtomicLong();
    Recorder ra = new Recorder() {
      @Override
      public void onAck(Ack x) {
        if (aClosed.get()) {
          lateCalls.incrementAndGet();
        }
        super.onAck(x);
      }
    };
    ChatClient a = open(d, "alice", ra);
    ChatClient b = open(d, "bob", rb);
    ready(a);
    ready(b);
    String cid = get(a.createDirect("bob")).conversationId;
    AtomicBoolean stop = new AtomicBoolean();
    List<CompletableFuture<Ack>> futures = Collections.synchronizedList(new ArrayList<>());
    List<Thread> senders = new ArrayList<>();
    for (int t = 0; t < 3; t++) {
      Thread th = new Thread(() -> {
        for (int i = 0; !stop.get() && i < 5000; i++) {
          futures.add(a.send(cid, "x" + i));
        }
      });
      th.start();
      senders.add(th);
    }
    Recorder.await("traffic flows", () -> rb.messages.size() > 50 && ra.acks.size() > 50);
    long t0 = System.nanoTime();
    a.close();
    aClosed.set(true);
    long calls = ra.calls;
    b.close();
    long bCalls = rb.calls;
    assertTrue(System.nanoTime() - t0 < 20_000_000_000L, "close() took too long");
    stop.set(true);
    for (Thread th : senders) {
      th.join(30_000);
    }
    Thread.sleep(500);
    assertEquals(calls, ra.calls, "a listener call after close()");
    assertEquals(bCalls, rb.calls, "a listener call after close()");
    assertEquals(0, lateCalls.get());
    for (CompletableFuture<Ack> f : futures) { // every future ends: acked or failed
      try {
        f.get(T, TimeUnit.SECONDS);
      } catch (ExecutionException e) {
        assertTrue(e.getCause() instanceof ChatException, e.toString());
      }
    }
    assertEquals(0, ChatClient.liveNativeClients());

    // close() from inside a listener method (on the callback thread).
    CompletableFuture<Void> closedInside = new CompletableFuture<>();
    ChatClient[] self = new ChatClient[1];
    Recorder rc = new Recorder() {
      @Override
      public void onConnectionState(ConnectionState s) {
        if (s == ConnectionState.READY) {
          self[0].close();
          closedInside.complete(null);
        }
      }
    };
    self[0] = builder(d, "carol", "carol-phone").listener(rc).build();
    self[0].start();
    closedInside.get(T, TimeUnit.SECONDS);
    self[0].close(); // again, from here: a no-op
    assertEquals(0, ChatClient.liveNativeClients());
  }

  @Test
  void aListenerThatThrowsDoesNotStopTheClient() throws Exception {
    Chatd d = chatd();
    AtomicInteger thrown = new AtomicInteger();
    Recorder rb = new Recorder() {
      @Override
      public void onMessage(Message m, Origin o) {
        super.onMessage(m, o);
        thrown.incrementAndGet();
        throw new IllegalStateException("app bug in onMessage");
      }

      @Override
      public void onConnectionState(ConnectionState s) {
        super.onConnectionState(s);
        throw new Error("an Error from onConnectionState");
      }
    };
    ChatClient a = open(d, "alice", new Recorder());
    ChatClient b = open(d, "bob", rb);
    ready(a);
    ready(b);
    String cid = get(a.createDirect("bob")).conversationId;
    for (int i = 0; i < 20; i++) {
      get(a.send(cid, "m" + i));
    }
    Recorder.await("every message reached the throwing listener", () -> thrown.get() == 20);
    // bob's client still works.
    get(b.send(cid, "still alive"));
    assertEquals(20, get(b.messages(cid, 0, 100)).size() - 1);
  }

  @Test
  void aForgottenClientIsFreedByTheSafetyNet() throws Exception {
    Chatd d = chatd();
    long before = ChatClient.liveNativeClients();
    forget(d);
    Recorder.await("the cleaner freed it", () -> {
      System.gc();
      return ChatClient.liveNativeClients() == before && ChatClient.liveGlobalRefs() == 0;
    });
  }

  private void forget(Chatd d) throws Exception {
    Recorder r = new Recorder();
    ChatClient c = builder(d, "dave", "dave-phone").listener(r).build();
    c.start();
    Recorder.await("READY", () -> r.last() == ConnectionState.READY);
    assertEquals(1, ChatClient.liveNativeClients());
    // c goes out of scope here without close()
  }
}
