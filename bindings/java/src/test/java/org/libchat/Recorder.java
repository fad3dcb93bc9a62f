package org.libchat;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.BooleanSupplier;
import org.libchat.Events.Ack;
import org.libchat.Events.AuthReason;
import org.libchat.Events.ChatError;
import org.libchat.Events.ConnectionState;
import org.libchat.Events.Origin;
import org.libchat.Events.Presence;
import org.libchat.Events.Receipt;
import org.libchat.Events.ResumeProgress;

/** A listener that keeps everything, for tests to wait on. */
class Recorder implements ChatListener {
  final List<Message> messages = new CopyOnWriteArrayList<>();
  final List<Origin> origins = new CopyOnWriteArrayList<>();
  final List<Ack> acks = new CopyOnWriteArrayList<>();
  final List<Receipt> receipts = new CopyOnWriteArrayList<>();
  final List<String> typing = new CopyOnWriteArrayList<>();
  final List<Presence> presence = new CopyOnWriteArrayList<>();
  final List<ConnectionState> states = new CopyOnWriteArrayList<>();
  final List<ChatError> errors = new CopyOnWriteArrayList<>();
  final List<AuthReason> auth = new CopyOnWriteArrayList<>();
  final List<ResumeProgress> progress = new CopyOnWriteArrayList<>();
  final List<Conversation> conversations = new CopyOnWriteArrayList<>();
  final List<String> threads = new CopyOnWriteArrayList<>();
  volatile long calls;

  private void seen() {
    calls++;
    String t = Thread.currentThread().getName();
    if (!threads.contains(t)) {
      threads.add(t);
    }
  }

  @Override
  public void onConnectionState(ConnectionState s) {
    seen();
    states.add(s);
  }

  @Override
  public void onMessage(Message m, Origin o) {
    seen();
    messages.add(m);
    origins.add(o);
  }

  @Override
  public void onAck(Ack a) {
    seen();
    acks.add(a);
  }

  @Override
  public void onReceipt(Receipt r) {
    seen();
    receipts.add(r);
  }

  @Override
  public void onTyping(String conv, String user, boolean t) {
    seen();
    typing.add(user + ":" + t);
  }

  @Override
  public void onPresence(Presence p) {
    seen();
    presence.add(p);
  }

  @Override
  public void onError(ChatError e) {
    seen();
    errors.add(e);
  }

  @Override
  public void onAuthRequired(AuthReason r) {
    seen();
    auth.add(r);
  }

  @Override
  public void onResumeProgress(ResumeProgress p) {
    seen();
    progress.add(p);
  }

  @Override
  public void onConversation(Conversation c) {
    seen();
    conversations.add(c);
  }

  List<String> bodies() {
    List<String> out = new ArrayList<>();
    for (Message m : messages) {
      out.add(m.body);
    }
    return out;
  }

  ConnectionState last() {
    return states.isEmpty() ? null : states.get(states.size() - 1);
  }

  /** Wait (generously: a loaded two-core machine) for cond; fail with what. */
  static void await(String what, BooleanSupplier cond) throws InterruptedException {
    await(what, 30_000, cond);
  }

  static void await(String what, long ms, BooleanSupplier cond) throws InterruptedException {
    long end = System.nanoTime() + ms * 1_000_000L;
    while (!cond.getAsBoolean()) {
      if (System.nanoTime() > end) {
        throw new AssertionError("timed out after " + ms + " ms waiting for: " + what);
      }
      Thread.sleep(10);
    }
  }
}
