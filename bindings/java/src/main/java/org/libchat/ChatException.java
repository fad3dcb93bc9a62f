package org.libchat;

/**
 * A libchat call failed. {@link #code()} is the {@code chat_err} value
 * (negative), {@link #codeName()} its name ({@code "CHAT_ERR_INVAL"}), and
 * the message the one-line reason the library gave ("body: 70000 bytes is
 * over the server's max_body_bytes 65536").
 */
public class ChatException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** {@code CHAT_ERR_INVAL}: a bad argument. */
  public static final int INVAL = -1;
  /** {@code CHAT_ERR_STATE}: not allowed now (for one, the client is closed). */
  public static final int STATE = -2;
  /** {@code CHAT_ERR_TOO_LARGE}: a value over its size limit. */
  public static final int TOO_LARGE = -4;
  /** {@code CHAT_ERR_MODULE}: the local store (or a REST request) failed. */
  public static final int MODULE = -6;
  /** {@code CHAT_ERR_AUTH}: the token is no good. */
  public static final int AUTH = -7;
  /** {@code CHAT_ERR_FATAL}: the client can only be closed. */
  public static final int FATAL = -100;

  private final int code;
  private final String codeName;

  public ChatException(int code, String codeName, String message) {
    super(message);
    this.code = code;
    this.codeName = codeName;
  }

  public int code() {
    return code;
  }

  public String codeName() {
    return codeName;
  }

  @Override
  public String toString() {
    return "ChatException(" + codeName + "): " + getMessage();
  }

  static ChatException closed() {
    return new ChatException(STATE, "CHAT_ERR_STATE", "the client is closed");
  }
}
