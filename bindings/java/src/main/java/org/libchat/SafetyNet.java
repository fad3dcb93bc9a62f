package org.libchat;

import java.lang.ref.PhantomReference;
import java.lang.ref.ReferenceQueue;
import java.util.Collections;
import java.util.HashSet;
import java.util.Set;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * A Cleaner for clients the app forgot to close: when a {@link ChatClient}
 * becomes unreachable, its action runs on the "libchat-cleaner" thread.
 * The action only hands the close to the client's own core thread, where
 * the native memory is freed; no libchat or app code runs here, and nothing
 * ever runs on a finalizer thread.
 *
 * This is java.lang.ref.Cleaner's design on PhantomReference (Java 1.2),
 * since Cleaner itself is Java 9 and Android API 33.
 */
final class SafetyNet {
  private SafetyNet() {}

  private static final Logger LOG = Logger.getLogger("org.libchat");
  private static final ReferenceQueue<Object> QUEUE = new ReferenceQueue<>();
  /* Keeps each registration reachable until it is cleaned. */
  private static final Set<Cleanable> LIVE =
      Collections.synchronizedSet(new HashSet<Cleanable>());
  private static Thread thread;

  static final class Cleanable extends PhantomReference<Object> {
    private Runnable action;

    Cleanable(Object referent, Runnable action) {
      super(referent, QUEUE);
      this.action = action;
    }

    /** Run the action once (at most); later calls do nothing. */
    void clean() {
      Runnable a;
      synchronized (this) {
        a = action;
        action = null;
      }
      LIVE.remove(this);
      if (a != null) {
        a.run();
      }
    }
  }

  static Cleanable register(Object referent, Runnable action) {
    Cleanable c = new Cleanable(referent, action);
    LIVE.add(c);
    synchronized (SafetyNet.class) {
      if (thread == null) {
        thread = new Thread(SafetyNet::loop, "libchat-cleaner");
        thread.setDaemon(true);
        thread.start();
      }
    }
    return c;
  }

  private static void loop() {
    for (;;) {
      try {
        ((Cleanable) QUEUE.remove()).clean();
      } catch (InterruptedException e) {
        // a daemon: keep serving
      } catch (Throwable t) {
        LOG.log(Level.WARNING, "libchat: cleaning a forgotten client failed", t);
      }
    }
  }
}
