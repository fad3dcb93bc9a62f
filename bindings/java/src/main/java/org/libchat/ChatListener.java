package org.libchat;

import org.libchat.Events.Ack;
import org.libchat.Events.AuthReason;
import org.libchat.Events.ChatError;
import org.libchat.Events.ConnectionState;
import org.libchat.Events.Hello;
import org.libchat.Events.Origin;
import org.libchat.Events.Presence;
import org.libchat.Events.Receipt;
import org.libchat.Events.ResumeProgress;

/**
 * What a {@link ChatClient} reports. Every method has an empty default;
 * override those you need. Calls arrive one at a time, in order, on the
 * executor given to {@link ChatClient.Builder#callbackExecutor} (Android:
 * the main thread's). A method that throws is logged and skipped; the
 * client goes on. After {@link ChatClient#close()} returns, no method is
 * called any more.
 */
public interface ChatListener {
  default void onConnectionState(ConnectionState state) {}

  /** The server's {@code hello}: who we are. */
  default void onHello(Hello hello) {}

  /** A message new to this device (duplicates are never reported). */
  default void onMessage(Message message, Origin origin) {}

  /** One of our sends is stored by the server (once per send). */
  default void onAck(Ack ack) {}

  /** A delivered/read mark for our messages (with counts in groups). */
  default void onReceipt(Receipt receipt) {}

  /** A peer started or stopped typing. */
  default void onTyping(String conversationId, String userId, boolean typing) {}

  /** A watched user's presence. */
  default void onPresence(Presence presence) {}

  /** Another device of ours read up to {@code lastReadMessageId}. */
  default void onReadSync(String conversationId, long lastReadMessageId) {}

  /** A conversation became known or changed. */
  default void onConversation(Conversation conversation) {}

  /** Something failed (the client retries what it can; see {@link ChatError#retrying}). */
  default void onError(ChatError error) {}

  /** Catch-up progress after a (re)connect. */
  default void onResumeProgress(ResumeProgress progress) {}

  /**
   * The token is no good (refused, or expired on an open session). Hand a
   * fresh one to {@link ChatClient#setToken} (now or later); the client
   * then reconnects and resumes with nothing lost. A
   * {@link ChatClient.Builder#tokenProvider} does it for you.
   */
  default void onAuthRequired(AuthReason reason) {}
}
