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
}
