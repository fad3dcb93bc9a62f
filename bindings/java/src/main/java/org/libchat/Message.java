package org.libchat;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/** A message of a conversation (PROTOCOL.md section 3), as the server stored it. */
public final class Message {
  /** The message's kind ({@code body_type}). */
  public enum BodyType { TEXT, MEDIA, SYSTEM, EDIT, DELETE, OTHER }

  /** The server's id, increasing within a conversation (0 while a send is pending). */
  public final long messageId;
  public final String conversationId;
  public final String senderId;
  public final String body;
  /** Unix milliseconds. */
  public final long serverTs;
  /** The sender's id for it; null for server-made messages. */
  public final String clientMsgId;
  /** The message this one answers, or -1. */
  public final long replyTo;
  public final BodyType bodyType;
  /** For EDIT and DELETE entries: the message they change, or -1. */
  public final long targetId;
  /** True for a bot's message. */
  public final boolean fromBot;
  /** When it was last edited (Unix ms), or {@link Long#MIN_VALUE}. */
  public final long editedTs;
  public final boolean deleted;
  public final List<String> mediaRefs;

  Message(long messageId, String conversationId, String senderId, String body,
          long serverTs, String clientMsgId, long replyTo, BodyType bodyType,
          long targetId, boolean fromBot, long editedTs, boolean deleted,
          List<String> mediaRefs) {
    this.messageId = messageId;
    this.conversationId = conversationId;
    this.senderId = senderId;
    this.body = body;
    this.serverTs = serverTs;
    this.clientMsgId = clientMsgId;
    this.replyTo = replyTo;
    this.bodyType = bodyType;
    this.targetId = targetId;
    this.fromBot = fromBot;
    this.editedTs = editedTs;
    this.deleted = deleted;
    this.mediaRefs = mediaRefs;
  }

  /* Called by the JNI glue. */
  static Message fromNative(long id, String conv, String sender, byte[] body,
                            long ts, String cmid, long replyTo, int bodyType,
                            long targetId, int senderKind, long editedTs,
                            boolean deleted, String[] media) {
    BodyType[] types = BodyType.values();
    BodyType bt = bodyType >= 0 && bodyType < types.length - 1
        ? types[bodyType] : BodyType.OTHER;
    List<String> refs = media == null ? Collections.<String>emptyList()
        : Collections.unmodifiableList(Arrays.asList(media));
    return new Message(id, conv, sender,
        new String(body, StandardCharsets.UTF_8), ts, cmid, replyTo, bt,
        targetId, senderKind == 1, editedTs, deleted, refs);
  }

  @Override
  public String toString() {
    return "Message{" + conversationId + "#" + messageId + " from " + senderId
        + ": " + body + "}";
  }
}
