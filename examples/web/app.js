// The libchat web client's entry point: sign-in, then one ChatClient
// (chat.js, the protocol and the local store) drawn by one ChatView
// (view.js). No build step: the browser loads these modules as they are.
//
// The token comes from the sign-in form or from the page address as
// #token=... (handy for tests and links); it is kept in sessionStorage so
// that a reload of the tab stays signed in, and removed from the address
// bar at once.

import { ChatClient, tokenIdentity } from './chat.js';
import { ChatView } from './view.js';

const TOKEN_KEY = 'libchat-web:token';

function tokenFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (token) history.replaceState(null, '', location.pathname + location.search);
  return token;
}

function signedIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById('signin').hidden = true;
  document.getElementById('app').hidden = false;
  const client = new ChatClient(token, {
    log: (line) => console.debug('[chat]', line),
  });
  const view = new ChatView(document.getElementById('app'), client, {
    onSignOut: () => {
      client.stop();
      sessionStorage.removeItem(TOKEN_KEY);
      location.reload();
    },
  });
  // For the console and the end-to-end test: the live objects.
  window.chat = { client, view };
  client.start();
}

function main() {
  const token = tokenFromHash() || sessionStorage.getItem(TOKEN_KEY);
  if (token) {
    signedIn(token);
    return;
  }
  const form = document.getElementById('signin-form');
  form.onsubmit = (ev) => {
    ev.preventDefault();
    const t = document.getElementById('token').value.trim();
    if (!t) return;
    if (!tokenIdentity(t)) {
      // Not fatal: the server decides. Say so, though.
      console.warn('the token does not look like a chatd token');
    }
    signedIn(t);
  };
  document.getElementById('signin').hidden = false;
}

main();
