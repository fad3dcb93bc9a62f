package org.libchat;

import org.libchat.Events.AuthReason;

/**
 * Gets the app a fresh bearer token when the server refused or expired the
 * old one. Called on the callback executor; may block (a login request).
 * Return null to give none now (call {@link ChatClient#setToken} later).
 */
public interface TokenProvider {
  String freshToken(AuthReason reason) throws Exception;
}
