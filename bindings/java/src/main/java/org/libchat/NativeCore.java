package org.libchat;

import java.nio.charset.StandardCharsets;

/**
 * The JNI entry points (jni/libchat_jni.c). Every method taking a handle is
 * called on that client's core thread only. Feed calls return a chat_err;
 * app calls throw {@link ChatException}.
 */
final class NativeCore {
  private NativeCore() {}

  private static volatile boolean loaded;

  /** Load libchat_jni (System.loadLibrary: java.library.path, or an APK's lib/<abi>/). */
  static synchronized void load() {
    if (loaded) {
      return;
    }
    String path = System.getProperty("libchat.jni.path");
    if (path != null && !path.isEmpty()) {
      System.load(path);
    } else {
      System.loadLibrary("chat_jni");
    }
    loaded = true;
  }

  /* For the glue: Java's UTF-8 decoder (JNI's own speaks modified UTF-8). */
  static String utf8(byte[] b) {
    return new String(b, StandardCharsets.UTF_8);
  }

  static native long create(NativeEvents sink, String storePath, int[] opts,
                            boolean manualDelivered);
  static native void free(long h);
  static native long liveGlobalRefs();
  static native long liveHandles();
  static native String version();
  static native String errName(int rc);

  static native int start(long h, long now);
  static native int stop(long h, long now);
  static native void setToken(long h, String token, long now);
  static native int onOpen(long h, long now);
  static native int onFrame(long h, byte[] frame, long now);
  static native int onClose(long h, int code, long now);
  static native int onRefused(long h, int status, long now);
  static native int onResponse(long h, int id, int status, byte[] body, long now);
  static native int onTimer(long h, long now);
  static native int hintNetworkUp(long h, long now);
  static native long nextDeadline(long h);
  static native boolean isDead(long h);
  static native int state(long h);
  static native int outboxLen(long h);
  static native String errmsg(long h);

  static native String send(long h, String conv, byte[] body, long now);
  static native void markDelivered(long h, String conv, long upTo, long now);
  static native void markRead(long h, String conv, long upTo, long now);
  static native void typing(long h, String conv, long now);
  static native void watchPresence(long h, String[] users, long now);
  static native int fetchConversations(long h, long now);
  static native int createConversation(long h, byte[] name, String[] members, long now);
  static native int loadOlder(long h, String conv, long before, int limit, long now);
  static native int registerDevice(long h, String platform, byte[] pushToken, long now);
  static native void listMessages(long h, String conv, long before, int limit,
                                  NativeEvents.Collector collector);
  static native void listConversations(long h, NativeEvents.Collector collector);
  static native long lastSeen(long h, String conv);
}
