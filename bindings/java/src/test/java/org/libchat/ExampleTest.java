package org.libchat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.libchat.Events.ConnectionState;

/** examples/ConsoleChat.java runs (Java's source launcher) and chats with a client here. */
class ExampleTest {
  @TempDir
  Path tmp;

  @Test
  void theConsoleChatExampleRuns() throws Exception {
    Path src = Paths.get(System.getProperty("libchat.basedir", "."), "examples", "ConsoleChat.java");
    assertTrue(Files.exists(src), src.toString());
    try (Chatd d = new Chatd(tmp).start()) {
      Recorder ra = new Recorder();
      try (ChatClient alice = ChatClient.builder(d.url()).token(d.token("alice", "a1"))
          .listener(ra).build()) {
        alice.start();
        String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        Path out = tmp.resolve("example.out");
        Process p = new ProcessBuilder(java,
            "-Djava.library.path=" + System.getProperty("java.library.path"),
            "-cp", cp, src.toString(), d.url(), d.token("bob", "b1"), "alice")
            .redirectErrorStream(true).redirectOutput(out.toFile()).start();
        try {
          Recorder.await("the example connected", 60_000, () -> read(out).contains("* chatting with alice"));
          Recorder.await("alice ready", () -> alice.state() == ConnectionState.READY);
          String cid = alice.createDirect("bob").get(30, TimeUnit.SECONDS).conversationId;
          alice.send(cid, "hi bob").get(30, TimeUnit.SECONDS);
          Recorder.await("the example shows it", () -> read(out).contains("<alice> hi bob"));
          OutputStream in = p.getOutputStream();
          in.write("hello from the console \u00e9\n/read\n".getBytes(StandardCharsets.UTF_8));
          in.flush();
          Recorder.await("alice gets the reply", () -> ra.bodies().contains("hello from the console \u00e9"));
          Recorder.await("and its read receipt", () -> ra.receipts.stream()
              .anyMatch(r -> r.state == Events.ReceiptState.READ));
          in.write("/quit\n".getBytes(StandardCharsets.UTF_8));
          in.flush();
          assertTrue(p.waitFor(60, TimeUnit.SECONDS), read(out));
          assertEquals(0, p.exitValue(), read(out));
        } finally {
          p.destroyForcibly();
        }
      }
    }
  }

  private static String read(Path p) {
    try {
      return new String(Files.readAllBytes(p), StandardCharsets.UTF_8);
    } catch (Exception e) {
      return "";
    }
  }
}
