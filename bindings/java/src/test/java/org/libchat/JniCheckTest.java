package org.libchat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Over 10,000 events through the glue in a JVM of its own, run with
 * -Xcheck:jni, whose output must hold no warning at all (a local reference
 * overflow, a call with an exception pending, a bad reference). The probe
 * itself checks the glue's global-reference counter (LeakProbe).
 */
class JniCheckTest {
  @TempDir
  Path tmp;

  @Test
  void tenThousandEventsLeakNoReferenceAndDrawNoJniWarning() throws Exception {
    String cp = System.getProperty("surefire.test.class.path",
        System.getProperty("java.class.path"));
    String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
    List<String> cmd = new ArrayList<>(Arrays.asList(java, "-Xcheck:jni",
        "-Djava.library.path=" + System.getProperty("java.library.path"),
        "-Dchatd=" + Chatd.BIN, "-cp", cp, LeakProbe.class.getName(), tmp.toString(), "okhttp"));
    Path out = tmp.resolve("probe.out");
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(out.toFile()).start();
    boolean ended = p.waitFor(300, TimeUnit.SECONDS);
    if (!ended) {
      p.destroyForcibly().waitFor(20, TimeUnit.SECONDS);
    }
    String text = new String(Files.readAllBytes(out), StandardCharsets.UTF_8);
    assertTrue(ended, "the probe did not finish:\n" + text);
    assertEquals(0, p.exitValue(), text);
    assertTrue(text.contains("PROBE OK"), text);
    assertFalse(text.contains("WARNING"), text);
  }
}
