package org.libchat;

/** The small value types that events carry. */
public final class Events {
  private Events() {}

  /** The connection state (on_connection). */
  public enum ConnectionState {
    IDLE, CONNECTING, HANDSHAKE, RESUMING, READY, BACKOFF,
    /** The token is no good; the client waits for a fresh one. */
    UNAUTHORIZED;

    static ConnectionState of(int v) {
      ConnectionState[] all = values();
      return v >= 0 && v < all.length ? all[v] : IDLE;
    }
  }

  /** Why the client needs a fresh token. */
  public enum AuthReason {
    /** HTTP 401: the server refused the token. */
    REFUSED,
    /** The open session was closed with 4001: the token expired. */
    EXPIRED;

    static AuthReason of(int v) {
      return v == 2 ? EXPIRED : REFUSED;
    }
  }

  /** Where a message came from. */
  public enum Origin {
    LIVE, RESUME, REST, OLDER;

    static Origin of(int v) {
      Origin[] all = values();
      return v >= 0 && v < all.length ? all[v] : LIVE;
    }
  }

  /** A receipt state: NONE (sent only), DELIVERED or READ. */
  public enum ReceiptState {
    NONE, DELIVERED, READ;

    static ReceiptState of(int v) {
      ReceiptState[] all = values();
      return v >= 0 && v < all.length ? all[v] : NONE;
    }
  }

  /** One of our sends is stored by the server (it left the outbox). */
  public static final class Ack {
    public final String clientMsgId;
    public final long messageId;
    public final long serverTs;
    /** The server had it already (a retry after a lost ack). */
    public final boolean duplicate;

    Ack(String clientMsgId, long messageId, long serverTs, boolean duplicate) {
      this.clientMsgId = clientMsgId;
      this.messageId = messageId;
      this.serverTs = serverTs;
      this.duplicate = duplicate;
    }

    @Override
    public String toString() {
      return "Ack{" + clientMsgId + " -> " + messageId + (duplicate ? " dup" : "") + "}";
    }
  }

  /** A member's delivered/read mark for our messages; counts in groups. */
  public static final class Receipt {
    public final String conversationId;
    public final long messageId;
    public final ReceiptState state;
    public final String memberId;
    public final boolean hasCounts;
    public final int deliveredCount;
    public final int readCount;

    Receipt(String conversationId, long messageId, ReceiptState state,
            String memberId, boolean hasCounts, int deliveredCount, int readCount) {
      this.conversationId = conversationId;
      this.messageId = messageId;
      this.state = state;
      this.memberId = memberId;
      this.hasCounts = hasCounts;
      this.deliveredCount = deliveredCount;
      this.readCount = readCount;
    }

    @Override
    public String toString() {
      return "Receipt{" + conversationId + "#" + messageId + " " + state + " by "
          + memberId + (hasCounts ? " d=" + deliveredCount + " r=" + readCount : "") + "}";
    }
  }

  /** A watched user's presence. */
  public static final class Presence {
    public enum State { OFFLINE, ONLINE, IDLE }

    public final String userId;
    public final State state;
    /** Unix ms, or {@link Long#MIN_VALUE} when unknown. */
    public final long lastActiveTs;

    Presence(String userId, State state, long lastActiveTs) {
      this.userId = userId;
      this.state = state;
      this.lastActiveTs = lastActiveTs;
    }

    @Override
    public String toString() {
      return "Presence{" + userId + " " + state + "}";
    }
  }

  /** Something went wrong (also for logs: the client retries what it can). */
  public static final class ChatError {
    /** The chat_err code (0 when the server sent an {@code error} frame). */
    public final int code;
    public final String codeName;
    /** The server's error code ("rate_limited"), or null. */
    public final String wireCode;
    /** The send this is about, or null. */
    public final String clientMsgId;
    public final String conversationId;
    public final String message;
    /** REST failures: the HTTP status (0: no answer). */
    public final int httpStatus;
    /** The client will try again by itself. */
    public final boolean retrying;
    /** The server's retry_after_ms, or -1. */
    public final long retryAfterMs;

    ChatError(int code, String codeName, String wireCode, String clientMsgId,
              String conversationId, String message, int httpStatus,
              boolean retrying, long retryAfterMs) {
      this.code = code;
      this.codeName = codeName;
      this.wireCode = wireCode;
      this.clientMsgId = clientMsgId;
      this.conversationId = conversationId;
      this.message = message;
      this.httpStatus = httpStatus;
      this.retrying = retrying;
      this.retryAfterMs = retryAfterMs;
    }

    @Override
    public String toString() {
      return "ChatError{" + (wireCode != null ? wireCode : codeName) + ": " + message
          + (retrying ? " (retrying)" : "") + "}";
    }
  }

  /** Catching up after a (re)connect. */
  public static final class ResumeProgress {
    /** The conversation just advanced, or null. */
    public final String conversationId;
    public final int gapsOpen;
    public final int messages;
    public final boolean resumed;
    /** Fully caught up. */
    public final boolean complete;

    ResumeProgress(String conversationId, int gapsOpen, int messages,
                   boolean resumed, boolean complete) {
      this.conversationId = conversationId;
      this.gapsOpen = gapsOpen;
      this.messages = messages;
      this.resumed = resumed;
      this.complete = complete;
    }
  }

  /** Who the server says we are (its {@code hello}). */
  public static final class Hello {
    public final String userId;
    public final String deviceId;
    public final String sessionId;
    public final int heartbeatMs;
    public final int maxBodyBytes;

    Hello(String userId, String deviceId, String sessionId, int heartbeatMs,
          int maxBodyBytes) {
      this.userId = userId;
      this.deviceId = deviceId;
      this.sessionId = sessionId;
      this.heartbeatMs = heartbeatMs;
      this.maxBodyBytes = maxBodyBytes;
    }
  }

  /** A stored message as the app shows it (a local read). */
  public static final class StoredMessage {
    public final Message message;
    /** Sent by this user. */
    public final boolean own;
    /** Own and not acked yet. */
    public final boolean pending;
    /** Own: the best receipt seen. */
    public final ReceiptState state;

    StoredMessage(Message message, boolean own, boolean pending, ReceiptState state) {
      this.message = message;
      this.own = own;
      this.pending = pending;
      this.state = state;
    }

    @Override
    public String toString() {
      return "StoredMessage{" + message + (own ? " own " + state : "")
          + (pending ? " pending" : "") + "}";
    }
  }
}
