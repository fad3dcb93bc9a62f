package org.libchat;

import java.util.ArrayDeque;
import java.util.List;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.locks.ReentrantLock;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * Runs listener calls one at a time, in order, on the app's executor. A
 * call that throws is logged and skipped. After {@link #close()} returns no
 * call starts, and one in flight on another thread has finished.
 */
final class Dispatcher implements Runnable {
  private static final Logger LOG = Logger.getLogger("org.libchat");
  private static final int BATCH = 256; // then yield the executor's thread

  private final Executor executor;
  private final ArrayDeque<Runnable> queue = new ArrayDeque<>();
  private final ReentrantLock calling = new ReentrantLock();
  private boolean scheduled;
  private volatile boolean closed;

  Dispatcher(Executor executor) {
    this.executor = executor;
  }

  void submitAll(List<Runnable> calls) {
    if (calls.isEmpty() || closed) {
      return;
    }
    synchronized (queue) {
      queue.addAll(calls);
      if (scheduled) {
        return;
      }
      scheduled = true;
    }
    schedule();
  }

  private void schedule() {
    try {
      executor.execute(this);
    } catch (RejectedExecutionException e) {
      synchronized (queue) {
        scheduled = false;
        queue.clear();
      }
      if (!closed) {
        LOG.log(Level.WARNING, "libchat: the callback executor refused work; events dropped", e);
      }
    }
  }

  @Override
  public void run() {
    for (int i = 0; i < BATCH; i++) {
      Runnable r;
      synchronized (queue) {
        r = queue.poll();
        if (r == null) {
          scheduled = false;
          return;
        }
      }
      calling.lock();
      try {
        if (!closed) {
          r.run();
        }
      } catch (Throwable t) {
        LOG.log(Level.WARNING, "libchat: a ChatListener method threw; skipped", t);
      } finally {
        calling.unlock();
      }
    }
    schedule();
  }

  boolean isCallingThread() {
    return calling.isHeldByCurrentThread();
  }

  /** No call starts from now on; returns at once. */
  void shut() {
    closed = true;
    synchronized (queue) {
      queue.clear();
    }
  }

  /** No call starts from now on, and one in flight (on another thread) has ended. */
  void close() {
    shut();
    if (!calling.isHeldByCurrentThread()) {
      calling.lock(); // waits for a call in flight on another thread
      calling.unlock();
    }
  }
}
