package org.libchat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.libchat.Events.Ack;
import org.libchat.Events.ConnectionState;
import org.libchat.Events.Origin;
import org.libchat.Events.Receipt;

/**
 * Run in a JVM of its own with -Xcheck:jni by {@link JniCheckTest}: well
 * over 10,000 events through the JNI glue (5,000 acks, 5,000 live
 * messages, receipts, then a resume that hands 1,000 messages to Java
 * inside single native calls), checking that the glue's global references
 * stay at one per client throughout and fall to zero after close(). The
 * JVM's own checker prints "WARNING" for any local reference overflow or
 * JNI misuse; the parent test fails on it.
 *
 * Usage: LeakProbe TMPDIR TRANSPORT (jdk|okhttp); -Dchatd=PATH.
 */
public final class LeakProbe {
  public static void main(String[] args) throws Exception {
    Path tmp = Paths.get(args[0]);
    TransportKind kind = TransportKind.valueOf(args[1].toUpperCase());
    AtomicLong events = new AtomicLong();
    Recorder rb = new Recorder() {
      @Override
      public void onMessage(Message m, Origin o) {
        events.incrementAndGet();
        super.onMessage(m, o);
      }
    };
    ChatListener ra = new ChatListener() {
      @Override
      public void onAck(Ack a) {
        events.incrementAndGet();
      }

      @Override
      public void onReceipt(Receipt r) {
        events.incrementAndGet();
      }
    };
    try (Chatd d = new Chatd(tmp).start()) {
      Path bstore = tmp.resolve("bob.db");
      ChatClient a = ChatClient.builder(d.url()).token(d.token("alice", "a1"))
          .transport(kind.make(), true).listener(ra).build();
      ChatClient b = ChatClient.builder(d.url()).token(d.token("bob", "b1"))
          .store(bstore.toString()).transport(kind.make(), true).listener(rb).build();
      a.start();
      b.start();
      Recorder.await("ready", () -> a.state() == ConnectionState.READY
          && b.state() == ConnectionState.READY);
      String cid = a.createDirect("bob").get(30, TimeUnit.SECONDS).conversationId;
      check(2, "two clients");
      for (int round = 0; round < 10; round++) {
        List<CompletableFuture<Ack>> fs = new ArrayList<>();
        for (int i = 0; i < 500; i++) {
          fs.add(a.send(cid, "r" + round + " m" + i + " \uD83D\uDE80"));
        }
        for (CompletableFuture<Ack> f : fs) {
          f.get(60, TimeUnit.SECONDS);
        }
        check(2, "round " + round);
      }
      Recorder.await("bob has 5000", 120_000, () -> rb.messages.size() == 5000);

      // Bob away; 1,000 more; his resume gets them in history frames: a
      // thousand callbacks inside one native call each.
      b.close();
      check(1, "bob closed");
      List<CompletableFuture<Ack>> fs = new ArrayList<>();
      for (int i = 0; i < 1000; i++) {
        fs.add(a.send(cid, "gap " + i));
      }
      for (CompletableFuture<Ack> f : fs) {
        f.get(60, TimeUnit.SECONDS);
      }
      Recorder rb2 = new Recorder() {
        @Override
        public void onMessage(Message m, Origin o) {
          events.incrementAndGet();
          super.onMessage(m, o);
        }
      };
      ChatClient b2 = ChatClient.builder(d.url()).token(d.token("bob", "b1"))
          .store(bstore.toString()).transport(kind.make(), true).listener(rb2).build();
      b2.start();
      Recorder.await("bob resumed 1000", 120_000, () -> rb2.messages.size() == 1000);
      if (!rb2.origins.contains(Origin.RESUME)) {
        throw new AssertionError("no RESUME origin: the history path was not taken");
      }
      check(2, "after resume");
      a.close();
      b2.close();
    }
    check(0, "all closed");
    long handles = ChatClient.liveNativeClients();
    if (handles != 0) {
      throw new AssertionError("native clients left: " + handles);
    }
    if (events.get() < 10_000) {
      throw new AssertionError("only " + events.get() + " events");
    }
    System.out.println("PROBE OK events=" + events.get() + " globalRefs=0 nativeClients=0");
    Files.deleteIfExists(tmp.resolve("bob.db"));
    System.exit(0);
  }

  private static void check(long want, String where) {
    long refs = ChatClient.liveGlobalRefs();
    if (refs != want) {
      throw new AssertionError(where + ": " + refs + " global refs, want " + want);
    }
  }
}
