import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import org.libchat.ChatClient;
import org.libchat.ChatListener;
import org.libchat.Events;
import org.libchat.JdkTransport;
import org.libchat.OkHttpTransport;
import org.libchat.Transport;

/**
 * The Java binding's send -> ack round trip and throughput against a
 * running server, in the format of the C client's bench/client-rtt:
 *
 *   java -Djava.library.path=JNI_DIR -cp CLASSES[:OKHTTP_JARS] \
 *        bench/ClientRtt.java --url ws://127.0.0.1:PORT --token T --peer U
 *        [--n 1000] [--window 32] [--msgs 5000] [--transport jdk|okhttp]
 *
 *   1. N sends one after the other, each when the previous one was acked
 *      (the listener's onAck), timing every round trip: p50, p99;
 *   2. MSGS sends keeping WINDOW unacked: acked messages per second.
 * One JSON line on stdout:
 *   {"lang":"java-jdk","n":..,"rtt_p50_us":..,"rtt_p99_us":..,
 *    "window":..,"msgs":..,"msgs_per_s":..}
 */
public class ClientRtt {
  public static void main(String[] args) throws Exception {
    String url = null, token = null, peer = null, transport = "jdk";
    int n = 1000, window = 32, msgs = 5000;
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--url": url = args[i + 1]; break;
        case "--token": token = args[i + 1]; break;
        case "--peer": peer = args[i + 1]; break;
        case "--n": n = Integer.parseInt(args[i + 1]); break;
        case "--window": window = Integer.parseInt(args[i + 1]); break;
        case "--msgs": msgs = Integer.parseInt(args[i + 1]); break;
        case "--transport": transport = args[i + 1]; break;
        default: throw new IllegalArgumentException("unknown argument " + args[i]);
      }
    }
    Transport t = transport.equals("okhttp") ? new OkHttpTransport() : new JdkTransport();
    final Semaphore acks = new Semaphore(0);
    final long[] ackedAt = {0};
    ChatListener l = new ChatListener() {
      @Override
      public void onAck(Events.Ack a) {
        ackedAt[0] = System.nanoTime();
        acks.release();
      }
    };
    // Listener calls straight on the dispatching thread: the figure is the
    // binding's, not a thread hop of the app's choosing.
    try (ChatClient c = ChatClient.builder(url).token(token).transport(t, true)
        .callbackExecutor(Runnable::run).listener(l).build()) {
      c.start();
      String conv = c.createDirect(peer).get(30, TimeUnit.SECONDS).conversationId;
      for (int i = 0; i < 20; i++) { // warm-up (JIT, SQLite pages)
        c.send(conv, "warm-" + i);
        acks.acquire();
      }
      long[] rtt = new long[n];
      for (int i = 0; i < n; i++) {
        long t0 = System.nanoTime();
        c.send(conv, "bench-" + i);
        if (!acks.tryAcquire(30, TimeUnit.SECONDS)) {
          throw new IllegalStateException("no ack within 30 s");
        }
        rtt[i] = ackedAt[0] - t0;
      }
      Arrays.sort(rtt);
      final Semaphore room = new Semaphore(window);
      final int total = msgs;
      final CountDownLatch all = new CountDownLatch(total);
      long w0 = System.nanoTime();
      Thread releaser = new Thread(() -> {
        try {
          for (int i = 0; i < total; i++) {
            acks.acquire();
            room.release();
            all.countDown();
          }
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      });
      releaser.start();
      for (int i = 0; i < msgs; i++) {
        room.acquire();
        c.send(conv, "win-" + i);
      }
      if (!all.await(120, TimeUnit.SECONDS)) {
        throw new IllegalStateException("window phase: acks missing");
      }
      double secs = (System.nanoTime() - w0) / 1e9;
      System.out.println(String.format(Locale.ROOT,
          "{\"lang\":\"java-%s\",\"n\":%d,\"rtt_p50_us\":%.1f,\"rtt_p99_us\":%.1f,"
          + "\"window\":%d,\"msgs\":%d,\"msgs_per_s\":%.0f}",
          transport, n, rtt[n / 2] / 1e3, rtt[Math.min(n - 1, (int) (n * 0.99))] / 1e3,
          window, msgs, msgs / secs));
    }
  }
}
