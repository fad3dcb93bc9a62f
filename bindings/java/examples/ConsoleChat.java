import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import org.libchat.ChatClient;
import org.libchat.ChatListener;
import org.libchat.Conversation;
import org.libchat.Events;
import org.libchat.Message;

/**
 * A console chat on the JVM: one direct conversation with a peer.
 *
 *   java -Djava.library.path=DIR -cp libchat.jar:okhttp... \
 *        examples/ConsoleChat.java ws://127.0.0.1:8080 TOKEN PEER [STORE]
 *
 * Lines typed are sent; "/read" marks everything read; "/history" pages
 * older messages; "/quit" (or end of input) leaves. What arrives is
 * printed as it comes: messages, acks, receipts, typing, presence.
 */
public class ConsoleChat {
  public static void main(String[] args) throws Exception {
    if (args.length < 3) {
      System.err.println("usage: ConsoleChat URL TOKEN PEER [STORE]");
      System.exit(2);
    }
    String url = args[0];
    String token = args[1];
    String peer = args[2];
    String store = args.length > 3 ? args[3] : ":memory:";
    final long[] newest = {0};

    ChatListener listener = new ChatListener() {
      @Override
      public void onConnectionState(Events.ConnectionState s) {
        System.out.println("* " + s.name().toLowerCase());
      }

      @Override
      public void onMessage(Message m, Events.Origin origin) {
        newest[0] = Math.max(newest[0], m.messageId);
        System.out.println("<" + m.senderId + "> " + m.body);
      }

      @Override
      public void onAck(Events.Ack a) {
        System.out.println("* sent #" + a.messageId);
      }

      @Override
      public void onReceipt(Events.Receipt r) {
        System.out.println("* " + r.state.name().toLowerCase() + " #" + r.messageId + " by " + r.memberId);
      }

      @Override
      public void onTyping(String conv, String user, boolean typing) {
        System.out.println("* " + user + (typing ? " is typing" : " stopped typing"));
      }

      @Override
      public void onPresence(Events.Presence p) {
        System.out.println("* " + p.userId + " is " + p.state.name().toLowerCase());
      }

      @Override
      public void onAuthRequired(Events.AuthReason reason) {
        System.out.println("* the token is no good (" + reason + "); restart with a new one");
      }
    };

    try (ChatClient c = ChatClient.builder(url).token(token).store(store)
        .listener(listener).build()) {
      c.start();
      Conversation conv = c.createDirect(peer).get();
      String cid = conv.conversationId;
      c.watchPresence(Collections.singletonList(peer));
      System.out.println("* chatting with " + peer + " in " + cid);
      BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
      String line;
      while ((line = in.readLine()) != null) {
        if (line.equals("/quit")) {
          break;
        } else if (line.equals("/read")) {
          c.markRead(cid, newest[0]);
        } else if (line.equals("/history")) {
          c.loadOlder(cid, 0, 20).get();
        } else if (!line.isEmpty()) {
          c.send(cid, line).get(); // wait for the ack: an orderly demo
        }
      }
    }
  }
}
