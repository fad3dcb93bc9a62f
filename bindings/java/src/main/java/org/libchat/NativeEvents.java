package org.libchat;

/**
 * What the JNI glue calls, on the core thread, inside a native call. The
 * implementation (in {@link Core}) only records and queues: it never calls
 * a native method and never lets an exception escape.
 */
abstract class NativeEvents {
  abstract void onConnection(int state);
  abstract void onHello(String userId, String deviceId, String sessionId,
                        long serverTs, int heartbeatMs, int maxBodyBytes);
  abstract void onMessage(Message m, int origin);
  abstract void onAck(String clientMsgId, long messageId, long serverTs, boolean duplicate);
  abstract void onReceipt(String conv, long messageId, int state, String member,
                          boolean hasCounts, int delivered, int read);
  abstract void onTyping(String conv, String user, boolean typing);
  abstract void onPresence(String user, int state, long lastActive);
  abstract void onStateChange(String conv, long lastRead);
  abstract void onConversation(Conversation c);
  abstract void onError(int err, String errName, String wireCode, String clientMsgId,
                        String conv, String message, int httpStatus, boolean retrying,
                        long retryAfterMs);
  abstract void onResumeProgress(String conv, int gapsOpen, int messages,
                                 boolean resumed, boolean complete);
  abstract void onRequestDone(int id, int result, String detail);
  abstract void onAuthRequired(int reason);

  /* The transport work the client wants. */
  abstract void connect(String token);
  abstract void write(byte[] frame);
  abstract void closeSocket();
  abstract void request(int id, String method, String path, byte[] body, String token);

  /** Rows of a local read. */
  interface Collector {
    void message(Message m, boolean own, boolean pending, int state);
    void conversation(Conversation c);
  }
}
