package org.libchat;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/** A conversation (PROTOCOL.md section 5). */
public final class Conversation {
  public final String conversationId;
  /** True for a group, false for a direct chat. */
  public final boolean group;
  /** The group's name; null for direct chats. */
  public final String name;
  public final List<String> members;
  public final List<String> admins;
  /** The newest message, when the server said; null otherwise. */
  public final Message lastMessage;
  public final int unreadCount;
  /** This user's read mark, or -1. */
  public final long lastReadMessageId;

  Conversation(String conversationId, boolean group, String name,
               List<String> members, List<String> admins, Message lastMessage,
               int unreadCount, long lastReadMessageId) {
    this.conversationId = conversationId;
    this.group = group;
    this.name = name;
    this.members = members;
    this.admins = admins;
    this.lastMessage = lastMessage;
    this.unreadCount = unreadCount;
    this.lastReadMessageId = lastReadMessageId;
  }

  private static List<String> list(String[] a) {
    return a == null ? Collections.<String>emptyList()
        : Collections.unmodifiableList(Arrays.asList(a));
  }

  /* Called by the JNI glue. */
  static Conversation fromNative(String id, int type, byte[] name,
                                 String[] members, String[] admins,
                                 Message last, int unread, long lastRead) {
    return new Conversation(id, type == 2,
        name == null ? null : new String(name, StandardCharsets.UTF_8),
        list(members), list(admins), last, unread, lastRead);
  }

  @Override
  public String toString() {
    return "Conversation{" + conversationId + (group ? " group " + name : " direct")
        + " " + members + "}";
  }
}
