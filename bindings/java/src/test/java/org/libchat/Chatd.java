package org.libchat;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A real chatd on 127.0.0.1 (port 0 the first time), with its own data
 * directory, as tests/integration/conftest.py starts it. Stopped by its
 * own Process handle only.
 */
final class Chatd implements AutoCloseable {
  static final String BIN = System.getProperty("chatd", "");
  private static final Pattern LISTENING = Pattern.compile("listening on 127\\.0\\.0\\.1:(\\d+)");

  final Path dataDir;
  final List<String> args;
  private final Path log;
  private Process proc;
  int port;

  Chatd(Path dir, String... extra) {
    this.dataDir = dir.resolve("chatd-data");
    this.log = dir.resolve("chatd.log");
    // Tests send fast: no rate limit in the way, and no fsync per commit.
    List<String> a = new ArrayList<>(Arrays.asList(
        "--rate-per-minute", "1000000", "--sync", "normal",
        "--rest-rate-per-minute", "100000", "--rest-burst", "10000"));
    a.addAll(Arrays.asList(extra));
    this.args = a;
  }

  Chatd start() throws Exception {
    return start(0);
  }

  /** Start (again) on this port (0: any free one). */
  Chatd start(int onPort) throws Exception {
    if (BIN.isEmpty() || !new File(BIN).canExecute()) {
      throw new IllegalStateException("-Dchatd= must name the chatd binary (got '" + BIN + "')");
    }
    List<String> cmd = new ArrayList<>(Arrays.asList(BIN, "serve", "--listen",
        "127.0.0.1:" + onPort, "--data-dir", dataDir.toString()));
    cmd.addAll(args);
    ProcessBuilder pb = new ProcessBuilder(cmd)
        .redirectError(ProcessBuilder.Redirect.appendTo(log.toFile()))
        .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
    // A port just freed may still be held a moment: retry a few times.
    for (int attempt = 0; ; attempt++) {
      proc = pb.start();
      Process p = proc;
      CompletableFuture<String> line = CompletableFuture.supplyAsync(() -> {
        try {
          return new BufferedReader(new InputStreamReader(p.getInputStream(),
              StandardCharsets.UTF_8)).readLine();
        } catch (IOException e) {
          return null;
        }
      });
      String first;
      try {
        first = line.get(30, TimeUnit.SECONDS);
      } catch (Exception e) {
        first = null;
      }
      Matcher m = first == null ? null : LISTENING.matcher(first);
      if (m != null && m.matches()) {
        port = Integer.parseInt(m.group(1));
        return this;
      }
      p.destroyForcibly().waitFor(20, TimeUnit.SECONDS);
      if (onPort == 0 || attempt >= 20) {
        throw new IllegalStateException("chatd did not start: " + first + "\n" + logText());
      }
      Thread.sleep(250);
    }
  }

  String logText() {
    try {
      return new String(Files.readAllBytes(log), StandardCharsets.UTF_8);
    } catch (IOException e) {
      return "";
    }
  }

  String url() {
    return "ws://127.0.0.1:" + port;
  }

  /** SIGTERM (a drain), then wait. */
  void stop() throws InterruptedException {
    if (proc != null) {
      proc.destroy();
      if (!proc.waitFor(30, TimeUnit.SECONDS)) {
        proc.destroyForcibly().waitFor(20, TimeUnit.SECONDS);
      }
      proc = null;
    }
  }

  /** SIGKILL: what was acked is on disk; the rest may be lost or half-done. */
  void kill() throws InterruptedException {
    if (proc != null) {
      proc.destroyForcibly().waitFor(20, TimeUnit.SECONDS);
      proc = null;
    }
  }

  String token(String user, String device, int ttlSeconds) throws Exception {
    Process p = new ProcessBuilder(BIN, "token", "--data-dir", dataDir.toString(),
        "--user", user, "--device", device, "--ttl", String.valueOf(ttlSeconds))
        .redirectErrorStream(true).start();
    String out;
    try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(),
        StandardCharsets.UTF_8))) {
      out = r.readLine();
    }
    if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0 || out == null) {
      throw new IllegalStateException("chatd token failed: " + out);
    }
    return out.trim();
  }

  String token(String user, String device) throws Exception {
    return token(user, device, 3600);
  }

  @Override
  public void close() throws InterruptedException {
    kill();
  }
}
