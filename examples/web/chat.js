// The protocol and state half of the libchat web client: one ChatClient per
// signed-in device. It speaks chat.v1 (PROTOCOL.md) over one WebSocket,
// keeps the device's local store (conversations, messages, the outbox, the
// resume marks) in localStorage, and tells the view that something changed
// through on('change'). It never touches the DOM.
//
// The rules it implements, each in one place below:
// - reconnect with exponential backoff and full jitter (1 s base, 60 s cap,
//   100 ms floor, as docs/protocol.md section 3), at once when the browser
//   says it is back online;
// - after every hello, `resume` with the last message id seen per
//   conversation and `since` (the highest id seen anywhere), and REST
//   history for a conversation that gets `resume_failed`;
// - an outbox in localStorage: a message is kept, and sent again with the
//   same client_msg_id, until its ack arrives (a duplicate ack included);
// - delivered/read marks batched to at most one flush a second per
//   conversation;
// - typing: true at most once per 3 s while typing, false after 5 s idle or
//   on send; a peer's typing expires 5 s after their last true;
// - presence of the open conversation's members;
// - PROTOCOL.md section 8: edits and deletes sent through the outbox and
//   applied to the local store from live frames, resume and REST in any
//   order (the state of a message is computed from the entries held, so
//   every device converges); group admins (badges, make admin, remove,
//   leave); goaway (a random wait within retry_after_ms instead of the
//   backoff); paced resumes when hello carries resume_batch_hint.

const BACKOFF_BASE_MS = 1000;
const BACKOFF_CAP_MS = 60000;
const BACKOFF_FLOOR_MS = 100;
const RECEIPT_INTERVAL_MS = 1000;
const TYPING_REPEAT_MS = 3000;
const TYPING_IDLE_MS = 5000;
const TYPING_EXPIRE_MS = 5000;
const RESEND_AFTER_MS = 10000;   // an unacked send on a live connection
const KEEP_MESSAGES = 500;       // per conversation in the local store
const REST_PAGE = 200;           // the REST maximum
const REST_FILL_PAGES = 10;      // past this a gap is dropped, not filled
const SINCE_NOTHING = '9223372036854775807';  // no conversation has more

// Message ids are decimal 64-bit integers: compare them as BigInt, never as
// Numbers (they do not fit in a double).
export function idCmp(a, b) {
  const x = BigInt(a), y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
function idMax(a, b) {
  if (a == null) return b;
  if (b == null) return a;
  return idCmp(a, b) >= 0 ? a : b;
}

// What the token says about its holder: its payload is base64url JSON with
// `u` (user) and `d` (device). Only used to find the local store before the
// server's hello; the server's word (hello) wins.
export function tokenIdentity(token) {
  try {
    const part = token.split('.')[0].replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(atob(part + '==='.slice((part.length + 3) % 4)));
    if (typeof json.u === 'string' && typeof json.d === 'string') {
      return { user: json.u, device: json.d };
    }
  } catch (e) {
    // Not our token format: wait for hello.
  }
  return null;
}

// After a goaway (section 8): uniform in [0, retry_after_ms], drawn once
// per close from the browser's strong random source, so that a restart's
// clients come back spread over the window.
export function goawayDelay(retryAfterMs, random = strongRandom) {
  const span = Math.max(0, Math.min(Number(retryAfterMs) || 0, 2 ** 31));
  return Math.min(span, Math.floor(random() * (span + 1)));
}

function strongRandom() {
  const b = new Uint32Array(1);
  crypto.getRandomValues(b);
  return b[0] / 2 ** 32;
}

// Edit and delete entries (section 8) are log entries naming a target,
// not messages to show.
export function isEntry(m) {
  return (m.body_type === 'edit' || m.body_type === 'delete') &&
         m.target_id != null;
}

// The state of message `t` given the entries of its conversation that
// name it (section 8): deleted if it was read back deleted or any delete
// names it; otherwise the edit with the highest id wins, unless t already
// holds that one or a later one (t.edit_id: the entry whose body it holds;
// without one, t.edited_ts as the server read it back). Pure: the same
// target and entries give the same answer in any order. Returns the
// changes to make, or null when there are none.
export function settle(t, entries) {
  if (t.body_type && t.body_type !== 'text' && t.body_type !== 'media') return null;
  const mine = entries.filter((e) => e.target_id === t.message_id);
  if (t.deleted || mine.some((e) => e.body_type === 'delete')) {
    const erase = mine.filter((e) => e.body_type === 'edit' && e.body !== '');
    if (t.deleted && t.body === '' && !erase.length) return null;
    return { deleted: true, body: '', erase };
  }
  let w = null;
  for (const e of mine) {
    if (e.body_type === 'edit' && (!w || idCmp(e.message_id, w.message_id) > 0)) w = e;
  }
  if (!w) return null;
  const applies = t.edit_id ? idCmp(w.message_id, t.edit_id) > 0
    : t.edited_ts == null || w.server_ts >= t.edited_ts;
  if (!applies) return null;
  return { body: w.body, edited_ts: w.server_ts, edit_id: w.message_id, erase: [] };
}

// Full jitter: uniform in [floor, min(cap, base * 2^attempt)].
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP_MS,
                           BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  const floor = Math.min(BACKOFF_FLOOR_MS, ceiling);
  return Math.floor(floor + random() * (ceiling - floor));
}

function newClientMsgId() {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  let hex = '';
  for (const b of bytes) hex += b.toString(16).padStart(2, '0');
  return 'w-' + Date.now().toString(36) + '-' + hex;
}

function emptyState() {
  return {
    version: 1,
    since: null,        // highest message id seen in any conversation
    convs: {},          // conversation_id -> conversation (section 5 shape + ours)
    messages: {},       // conversation_id -> messages, oldest first
    outbox: [],         // unacked sends, in send order
    failed: [],         // sends the server refused for good
    receiptFlushAt: {}, // conversation_id -> Date.now() of the last flush,
                        // so that a reload does not flush again too soon
  };
}

export class ChatClient {
  constructor(token, { storage = window.localStorage, log = () => {} } = {}) {
    this.token = token;
    this.storage = storage;
    this.log = log;
    this.listeners = new Map();
    this.me = tokenIdentity(token);
    this.state = emptyState();
    if (this.me) this.load();

    this.status = 'connecting';  // connecting, online, offline, unauthorized
    this.ws = null;
    this.hello = null;
    this.attempt = 0;
    this.reconnectTimer = null;
    this.heartbeatTimer = null;
    this.lastRx = 0;
    this.resuming = false;
    this.filling = new Set();          // conversations being filled by REST
    this.openConv = null;
    this.presence = {};                // user_id -> {state, last_active_ts}
    this.typing = {};                  // conversation_id -> {user_id: expires}
    this.typingOut = { conv: null, lastTrue: 0, idleTimer: null };
    this.marks = {};                   // conversation_id -> receipt batching
    this.goaway = null;                // the server's goaway, until the close
    this.resumeRound = null;           // a paced resume in progress
    this.refreshing = new Set();       // conversations being fetched anew
    this.stats = { acks: 0, duplicates: 0, resumes: 0, restFills: 0,
                   goaways: 0, lastGoawayWait: null, resumeFrames: 0,
                   edits: 0, deletes: 0 };
    this.saveTimer = null;
    this.stopped = false;

    this.onOnline = () => this.reconnectNow();
    this.onOffline = () => this.dropConnection('the browser went offline');
    this.onVisible = () => this.markOpenRead();
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    document.addEventListener('visibilitychange', this.onVisible);
    this.sweepTimer = setInterval(() => this.sweep(), 1000);
  }

  // ------------------------------------------------------------ events --

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, []);
    this.listeners.get(event).push(fn);
  }
  emit(event, data) {
    for (const fn of this.listeners.get(event) || []) fn(data);
  }
  changed() { this.emit('change'); }

  // ------------------------------------------------------ local store --

  storageKey() { return `libchat-web:v1:${this.me.user}:${this.me.device}`; }

  load() {
    try {
      const raw = this.storage.getItem(this.storageKey());
      if (raw) this.state = Object.assign(emptyState(), JSON.parse(raw));
    } catch (e) {
      this.log('local store unreadable, starting afresh: ' + e);
      this.state = emptyState();
    }
  }
  // The outbox must survive a reload the moment a message is typed, so
  // outbox changes save at once; everything else is coalesced.
  saveNow() {
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    if (!this.me) return;
    try {
      this.storage.setItem(this.storageKey(), JSON.stringify(this.state));
    } catch (e) {
      this.log('could not save the local store: ' + e);
    }
  }
  saveSoon() {
    if (!this.saveTimer) this.saveTimer = setTimeout(() => this.saveNow(), 250);
  }

  // ------------------------------------------------------- connection --

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.sweepTimer);
    clearInterval(this.heartbeatTimer);
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    document.removeEventListener('visibilitychange', this.onVisible);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.saveNow();
  }

  setStatus(s) {
    if (this.status !== s) {
      this.status = s;
      this.changed();
    }
  }

  connect() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.stopped || this.ws) return;
    this.setStatus('connecting');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/chat/v1/ws?access_token=` +
                encodeURIComponent(this.token);
    let ws;
    try {
      ws = new WebSocket(url, 'chat.v1');
    } catch (e) {
      this.log('cannot open the WebSocket: ' + e);
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastRx = Date.now();
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch (e) {
        this.log('not JSON from the server: ' + e);
        return;
      }
      this.handle(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.connectionLost(`closed (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`,
                          this.hello === null);
    };
    ws.onerror = () => {};  // onclose follows and says what matters
  }

  // A connection that ends: stop its timers, then come back later.
  connectionLost(why, beforeHello) {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    this.hello = null;
    this.resuming = false;
    this.presence = {};  // unknown until the next subscription answers
    this.typing = {};
    // Our typing state died with the session: the next key starts afresh.
    clearTimeout(this.typingOut.idleTimer);
    this.typingOut = { conv: null, lastTrue: 0, idleTimer: null };
    this.resumeRound = null;
    this.log('disconnected: ' + why);
    if (this.stopped) return;
    this.setStatus('offline');
    const goaway = this.goaway;
    this.goaway = null;
    if (goaway) {
      // A deliberate close announced by goaway (section 8): one random
      // wait within the server's window instead of the backoff; should
      // that reconnect fail, the backoff starts from its first step.
      const wait = goawayDelay(goaway.retry_after_ms);
      this.stats.lastGoawayWait = wait;
      this.attempt = 0;
      this.scheduleReconnect(wait);
      return;
    }
    if (beforeHello) {
      // The upgrade failed before hello. A WebSocket cannot see the HTTP
      // status, so ask REST whether it is the token (401): then retrying
      // is pointless.
      this.api('GET', '/api/v1/conversations?limit=1').then(() => {
        this.scheduleReconnect();
      }, (e) => {
        if (e.status === 401) {
          this.setStatus('unauthorized');
        } else {
          this.scheduleReconnect();
        }
      });
    } else {
      this.scheduleReconnect();
    }
  }

  dropConnection(why) {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    try { ws.close(); } catch (e) { /* already closing */ }
    this.connectionLost(why, false);
  }

  scheduleReconnect(wait) {
    if (this.stopped || this.reconnectTimer || this.ws) return;
    const delay = wait !== undefined ? wait : backoffDelay(this.attempt++);
    this.nextAttemptAt = Date.now() + delay;
    this.log(`reconnecting in ${delay} ms (attempt ${this.attempt})`);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
    this.changed();
  }

  // The browser is back online: connect now, from the first backoff step.
  // An attempt still in its handshake was probably started while offline
  // and will fail; replace it rather than wait for its failure and a long
  // backoff.
  reconnectNow() {
    if (this.stopped || this.status === 'unauthorized') return;
    if (this.ws && this.hello) return;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.onclose = null;
      try { ws.close(); } catch (e) { /* not open yet */ }
    }
    this.attempt = 0;
    this.connect();
  }

  sendFrame(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  online() { return this.hello !== null && this.ws !== null; }

  // -------------------------------------------------- frame dispatch --

  handle(f) {
    switch (f.type) {
      case 'hello': return this.onHello(f);
      case 'ack': return this.onAck(f);
      case 'message': return this.onMessage(f);
      case 'receipt': return this.onReceipt(f);
      case 'history': return this.onHistory(f);
      case 'resume_failed': return this.onResumeFailed(f);
      case 'resumed': return this.onResumed(f);
      case 'typing': return this.onTyping(f);
      case 'presence': return this.onPresence(f);
      case 'state_change': return this.onStateChange(f);
      case 'conversation': return this.onConversation(f.conversation);
      case 'error': return this.onError(f);
      case 'pong': return;
      case 'goaway': return this.onGoaway(f);
      default: this.log('ignoring a frame of type ' + f.type);
    }
  }

  onHello(f) {
    const me = { user: f.user_id, device: f.device_id };
    if (!this.me || this.me.user !== me.user || this.me.device !== me.device) {
      this.me = me;
      this.state = emptyState();
      this.load();
    }
    this.hello = f;
    this.attempt = 0;
    this.lastRx = Date.now();
    this.setStatus('online');
    this.startHeartbeat(f.heartbeat_ms);

    // Catch up: every conversation we hold messages of is listed with the
    // last id we have; the rest are covered by `since` (or, on a device
    // that has seen nothing yet, by a `conversation` frame each). A server
    // that wants resumes paced says how many conversations per frame.
    this.resuming = true;
    this.stats.resumes++;
    const hint = f.limits && f.limits.resume_batch_hint;
    this.resumeRound = hint ? { hint, round: 0 } : null;
    this.sendResume();
    // Conversations without messages are in no resume answer; the list
    // brings their names, members and unread counts.
    this.refreshConversations();
    if (this.openConv) this.subscribePresence(this.openConv);
    for (const cid of Object.keys(this.marks)) this.scheduleMarks(cid);
    this.changed();
  }

  // One resume frame: with a paced resume (section 8), every round but the
  // last lists one batch of the most recently active conversations with
  // `since` past every id; the last lists them all with the real `since`.
  sendResume() {
    const seen = Object.entries(this.state.convs)
      .filter(([, conv]) => conv.lastSeen && !conv.left)
      .map(([cid, conv]) => [cid, conv.lastSeen])
      .sort((a, b) => idCmp(b[1], a[1]) || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const r = this.resumeRound;
    let list = seen;
    let since = this.state.since;
    if (r && seen.length > r.hint) {
      const rounds = Math.ceil(seen.length / r.hint);
      r.final = r.round + 1 >= rounds;
      if (!r.final) {
        list = seen.slice(r.round * r.hint, (r.round + 1) * r.hint);
        since = SINCE_NOTHING;
      }
    } else if (r) {
      r.final = true;
    }
    const resume = { type: 'resume', last_seen: Object.fromEntries(list) };
    if (since) resume.since = since;
    this.stats.resumeFrames++;
    this.sendFrame(resume);
  }

  onResumed(f) {
    if (this.resumeRound && !this.resumeRound.final) {
      this.resumeRound.round++;
      this.sendResume();
      return;
    }
    this.resumeRound = null;
    this.resuming = false;
    this.log(`resumed: ${f.conversations} conversations, ${f.messages} messages`);
    for (const cid of Object.keys(this.state.convs)) this.advanceLastSeen(cid);
    this.flushOutbox();
    // Receipts that came while we were away are gone (resume replays only
    // messages): ask where the conversation on screen stands.
    if (this.openConv) this.refreshReceipts(this.openConv);
    this.saveSoon();
    this.changed();
  }

  onHistory(f) {
    for (const m of f.messages) this.ingest(m, false);
    this.changed();
  }

  onMessage(f) {
    const m = Object.assign({}, f);
    delete m.type;
    this.ingest(m, true);
    this.changed();
  }

  onResumeFailed(f) {
    this.log(`resume_failed for ${f.conversation_id} (${f.reason}): REST history`);
    this.fillFromRest(f.conversation_id);
  }

  onConversation(c) {
    const known = this.state.convs[c.conversation_id];
    const conv = Object.assign(known || { loaded: false }, {
      conversation_id: c.conversation_id,
      type: c.type,
      name: c.name,
      members: c.members,
      // An older server sends no admins: unknown, not "nobody".
      admins: Array.isArray(c.admins) ? c.admins
        : (known && known.admins) || null,
      last_read_message_id: idMax(known && known.last_read_message_id,
                                  c.last_read_message_id),
    });
    // Removed (or left from another device): stop resuming it.
    conv.left = !!(this.me && !c.members.includes(this.me.user));
    if (conv.left) delete conv.lastSeen;
    if (c.last_message) {
      conv.last_message = c.last_message;
    }
    if (typeof c.unread_count === 'number') conv.serverUnread = c.unread_count;
    this.state.convs[c.conversation_id] = conv;
    this.updateUnread(conv);
    if (!this.state.messages[c.conversation_id]) {
      this.state.messages[c.conversation_id] = [];
    }
    this.saveSoon();
    this.changed();
  }

  onGoaway(f) {
    // The close follows (1012 drain, 1013 overload); connectionLost waits.
    this.goaway = f;
    this.stats.goaways++;
    this.log(`goaway (${f.reason}): back within ${f.retry_after_ms} ms`);
  }

  onError(f) {
    const entry = this.state.outbox.find((e) => e.client_msg_id === f.ref);
    if (!entry) {
      this.log(`server error ${f.code}: ${f.message}`);
      this.emit('error', f);
      return;
    }
    if (f.code === 'rate_limited' || f.code === 'internal') {
      entry.notBefore = Date.now() + (f.retry_after_ms || 5000);
      entry.sentAt = 0;
      this.saveNow();
      return;
    }
    // Refused for good (too_large, not_member, ...): sending it again
    // would be refused again.
    this.state.outbox = this.state.outbox.filter((e) => e !== entry);
    this.state.failed.push(Object.assign(entry, { error: f.code }));
    this.saveNow();
    this.emit('error', f);
    this.changed();
  }

  // ---------------------------------------------------------- messages --

  // Put one message in the local store, once: a message id seen before is
  // dropped, so resume, REST and live delivery may overlap freely.
  ingest(m, live) {
    const cid = m.conversation_id;
    if (!this.state.convs[cid]) {
      // A conversation we have not heard of yet: keep the message and learn
      // the rest from REST.
      this.state.convs[cid] = { conversation_id: cid, type: 'direct',
                                name: null, members: [m.sender_id],
                                unread_count: 0, loaded: false,
                                last_read_message_id: null };
      this.refreshConversations();
    }
    const conv = this.state.convs[cid];
    const list = this.state.messages[cid] || (this.state.messages[cid] = []);
    // Our own retry may have been stored although its ack never came back;
    // the copy in the history is the ack.
    if (this.me && m.sender_id === this.me.user && m.client_msg_id) {
      const before = this.state.outbox.length;
      this.state.outbox = this.state.outbox.filter(
        (e) => e.client_msg_id !== m.client_msg_id);
      if (this.state.outbox.length !== before) this.saveNow();
    }
    const entry = isEntry(m);
    let i = list.length;
    while (i > 0 && idCmp(list[i - 1].message_id, m.message_id) > 0) i--;
    if (i > 0 && list[i - 1].message_id === m.message_id) {
      // A repeat. An entry is applied again all the same: harmless, and
      // it heals a target that was trimmed and paged in since.
      if (entry) this.settleTarget(cid, m.target_id);
      return false;
    }
    m = Object.assign({}, m);  // ours to change (edits and deletes apply)
    list.splice(i, 0, m);
    if (list.length > KEEP_MESSAGES) {
      list.splice(0, list.length - KEEP_MESSAGES);
      conv.loaded = false;  // the oldest are gone: REST has them
    }
    // Apply the entry to its target, or the entries that came first to
    // this message (section 8).
    if (entry) {
      if (m.body_type === 'edit') this.stats.edits++;
      else this.stats.deletes++;
      this.settleTarget(cid, m.target_id);
    } else {
      this.settleTarget(cid, m.message_id);
    }
    if (!entry && (!conv.last_message ||
                   idCmp(m.message_id, conv.last_message.message_id) > 0)) {
      conv.last_message = m;
    }
    // A member or admin change learnt after the fact: fetch the
    // conversation anew (live ones come with a `conversation` frame).
    if (m.body_type === 'system' && !live) this.refreshConversation(cid);
    const mine = this.me && m.sender_id === this.me.user;
    if (!mine) {
      if (cid === this.openConv && this.visible()) {
        this.queueMark(cid, 'read', m.message_id);
      }
      this.updateUnread(conv);
      this.queueMark(cid, 'delivered', m.message_id);
      if (this.typing[cid]) delete this.typing[cid][m.sender_id];
    }
    // Live messages move the marks at once; history moves them when the
    // whole answer is in (onResumed), so a connection lost in the middle of
    // a resume never skips a gap.
    if (live && !this.resuming) this.advanceLastSeen(cid);
    this.saveSoon();
    return true;
  }

  // Bring message `id` of a conversation up to date with the edit and
  // delete entries held for it (see settle()); true when it changed.
  settleTarget(cid, id) {
    const list = this.state.messages[cid] || [];
    const t = list.find((x) => x.message_id === id);
    if (!t || isEntry(t)) return false;
    const ch = settle(t, list.filter((x) => isEntry(x) && x.target_id === id));
    if (!ch) return false;
    for (const e of ch.erase) e.body = '';  // a deleted body survives nowhere
    if (ch.deleted) {
      t.deleted = true;
      t.body = '';
      delete t.media_refs;
    } else {
      t.body = ch.body;
      t.edited_ts = ch.edited_ts;
      t.edit_id = ch.edit_id;
    }
    const conv = this.state.convs[cid];
    if (conv && conv.last_message && conv.last_message.message_id === id) {
      conv.last_message = t;
    }
    // An erased body leaves localStorage at once, not a moment later.
    if (ch.deleted) this.saveNow();
    else this.saveSoon();
    return true;
  }

  advanceLastSeen(cid) {
    if (this.filling.has(cid)) return;
    const list = this.state.messages[cid] || [];
    if (!list.length) return;
    const last = list[list.length - 1].message_id;
    const conv = this.state.convs[cid];
    conv.lastSeen = idMax(conv.lastSeen, last);
    this.state.since = idMax(this.state.since, last);
  }

  // resume_failed: page through REST from our last id; a gap too long to
  // page through is dropped and the newest page shown instead.
  async fillFromRest(cid) {
    if (this.filling.has(cid)) return;
    this.filling.add(cid);
    this.stats.restFills++;
    const conv = this.state.convs[cid];
    try {
      let after = (conv && conv.lastSeen) || '0';
      let more = true;
      for (let page = 0; more && page < REST_FILL_PAGES; page++) {
        const r = await this.api('GET', `/api/v1/conversations/${
          encodeURIComponent(cid)}/messages?after=${after}&limit=${REST_PAGE}`);
        for (const m of r.messages) this.ingest(m, false);
        if (r.messages.length) after = r.messages[r.messages.length - 1].message_id;
        more = r.has_more;
      }
      if (more) {
        this.state.messages[cid] = [];
        await this.loadLatest(cid);
      }
    } catch (e) {
      this.log(`REST history for ${cid} failed: ${e.message}`);
      this.filling.delete(cid);
      return;  // the next resume tries again from the same mark
    }
    this.filling.delete(cid);
    this.advanceLastSeen(cid);
    this.saveSoon();
    this.changed();
  }

  // The newest page of a conversation, for one this device has not loaded.
  async loadLatest(cid) {
    const r = await this.api('GET', `/api/v1/conversations/${
      encodeURIComponent(cid)}/messages?limit=50`);
    for (const m of r.messages.slice().reverse()) this.ingest(m, false);
    const conv = this.state.convs[cid];
    if (conv) conv.loaded = true;
    this.advanceLastSeen(cid);
    this.changed();
  }

  messages(cid) { return this.state.messages[cid] || []; }
  // What to draw: messages and notices, not edit and delete entries.
  shown(cid) { return this.messages(cid).filter((m) => !isEntry(m)); }
  pending(cid) {
    return this.state.outbox.filter((e) => e.conversation_id === cid);
  }
  failed(cid) {
    return this.state.failed.filter((e) => e.conversation_id === cid);
  }

  // ------------------------------------------------------------ outbox --

  send(cid, body) {
    const max = this.hello ? this.hello.limits.max_body_bytes : 65536;
    if (new TextEncoder().encode(body).length > max) {
      throw new Error(`the message is over ${max} bytes`);
    }
    const entry = { client_msg_id: newClientMsgId(), conversation_id: cid,
                    body, created_ts: Date.now(), sentAt: 0 };
    this.state.outbox.push(entry);
    this.saveNow();
    this.stopTyping();
    if (this.online() && !this.resuming) this.transmit(entry);
    this.changed();
    return entry.client_msg_id;
  }

  // Edit our message `targetId` (section 8): through the outbox like a
  // send (same client_msg_id on every retry, kept until acked); applied
  // to the local copy when acked. The server decides whether it may be
  // done (forbidden, not_found: the entry moves to the failed list).
  edit(cid, targetId, body) {
    return this.enqueue(cid, 'edit', targetId, body);
  }

  // Delete message `targetId`: ours, or anyone's for a group admin.
  deleteMessage(cid, targetId) {
    return this.enqueue(cid, 'delete', targetId, '');
  }

  enqueue(cid, kind, targetId, body) {
    const max = this.hello ? this.hello.limits.max_body_bytes : 65536;
    if (new TextEncoder().encode(body).length > max) {
      throw new Error(`the message is over ${max} bytes`);
    }
    const entry = { client_msg_id: newClientMsgId(), conversation_id: cid,
                    kind, target_id: targetId, body, created_ts: Date.now(),
                    sentAt: 0 };
    this.state.outbox.push(entry);
    this.saveNow();
    if (this.online() && !this.resuming) this.transmit(entry);
    this.changed();
    return entry.client_msg_id;
  }

  transmit(entry) {
    if (entry.notBefore && entry.notBefore > Date.now()) return;
    const frame = { type: entry.kind || 'send', client_msg_id: entry.client_msg_id,
                    conversation_id: entry.conversation_id };
    if (entry.kind === 'edit' || entry.kind === 'delete') frame.target_id = entry.target_id;
    if (entry.kind !== 'delete') frame.body = entry.body;
    if (this.sendFrame(frame)) {
      entry.sentAt = Date.now();
    }
  }

  // In send order, so that one sender's messages keep their order.
  flushOutbox() {
    if (!this.online() || this.resuming) return;
    for (const entry of this.state.outbox) this.transmit(entry);
  }

  onAck(f) {
    const entry = this.state.outbox.find((e) => e.client_msg_id === f.client_msg_id);
    this.stats.acks++;
    if (f.duplicate) this.stats.duplicates++;
    if (!entry) return;  // acked already (a retry crossed its ack)
    this.state.outbox = this.state.outbox.filter((e) => e !== entry);
    this.saveNow();
    const m = { message_id: f.message_id, conversation_id: entry.conversation_id,
                sender_id: this.me.user, body: entry.body,
                server_ts: f.server_ts, client_msg_id: f.client_msg_id };
    if (entry.kind === 'edit' || entry.kind === 'delete') {
      // The log entry, as the other members get it: applied to our copy.
      m.body_type = entry.kind;
      m.target_id = entry.target_id;
    }
    this.ingest(m, true);
    this.saveNow();
    // A duplicate answers a retry of a message stored long ago: its
    // receipts may have gone to a connection we lost.
    if (f.duplicate) this.refreshReceipts(entry.conversation_id);
    this.changed();
  }

  // Once a second: resend what a live connection left unacked for too
  // long (or a rate limit held back), expire peers' typing.
  sweep() {
    const now = Date.now();
    if (this.online() && !this.resuming) {
      for (const e of this.state.outbox) {
        if ((!e.sentAt || now - e.sentAt > RESEND_AFTER_MS) &&
            (!e.notBefore || e.notBefore <= now)) {
          this.transmit(e);
        }
      }
    }
    let expired = false;
    for (const users of Object.values(this.typing)) {
      for (const [u, until] of Object.entries(users)) {
        if (until <= now) {
          delete users[u];
          expired = true;
        }
      }
    }
    if (expired) this.changed();
  }

  startHeartbeat(heartbeatMs) {
    clearInterval(this.heartbeatTimer);
    const every = Math.max(5000, Math.floor((heartbeatMs || 30000) / 2));
    this.heartbeatTimer = setInterval(() => {
      // The server pings a silent peer after heartbeat_ms and the browser
      // answers by itself, but a connection that died without a close is
      // only found by hearing nothing back.
      if (Date.now() - this.lastRx > every * 2 + 15000) {
        this.dropConnection('no frame from the server for too long');
        return;
      }
      this.sendFrame({ type: 'ping' });
    }, every);
  }

  // ---------------------------------------------------------- receipts --

  visible() { return document.visibilityState !== 'hidden'; }

  queueMark(cid, state, id) {
    const m = this.marks[cid] || (this.marks[cid] = {
      delivered: null, read: null, sentDelivered: null, sentRead: null,
      lastFlush: this.state.receiptFlushAt[cid] || 0, timer: null });
    m[state] = idMax(m[state], id);
    if (state === 'read') m.delivered = idMax(m.delivered, id);
    this.scheduleMarks(cid);
  }

  // At most one flush a second per conversation; marks that build up in
  // between go out together in the next one.
  scheduleMarks(cid) {
    const m = this.marks[cid];
    if (!m || m.timer) return;
    const wait = Math.max(0, m.lastFlush + RECEIPT_INTERVAL_MS - Date.now());
    m.timer = setTimeout(() => {
      m.timer = null;
      this.flushMarks(cid);
    }, wait);
  }

  flushMarks(cid) {
    const m = this.marks[cid];
    if (!this.online()) return;  // onHello schedules them again
    const above = (a, b) => a && (!b || idCmp(a, b) > 0);
    let sent = false;
    // A read mark counts as delivered too, so delivered goes only when it
    // is ahead of the read mark being sent.
    if (above(m.read, m.sentRead)) {
      this.log(`read up to ${m.read}`);
      this.sendFrame({ type: 'read', conversation_id: cid, up_to_message_id: m.read });
      m.sentRead = m.read;
      m.sentDelivered = idMax(m.sentDelivered, m.read);
      const conv = this.state.convs[cid];
      if (conv) {
        conv.last_read_message_id = idMax(conv.last_read_message_id, m.read);
        conv.serverUnread = 0;
        this.updateUnread(conv);
      }
      sent = true;
    }
    if (above(m.delivered, m.sentDelivered)) {
      this.sendFrame({ type: 'delivered', conversation_id: cid,
                       up_to_message_id: m.delivered });
      m.sentDelivered = m.delivered;
      sent = true;
    }
    if (sent) {
      m.lastFlush = Date.now();
      this.state.receiptFlushAt[cid] = m.lastFlush;
      this.saveNow();
      this.changed();
    }
  }

  markOpenRead() {
    const cid = this.openConv;
    if (!cid || !this.visible()) return;
    const list = this.messages(cid);
    const conv = this.state.convs[cid];
    if (conv) {
      conv.serverUnread = 0;
      this.updateUnread(conv);
    }
    if (list.length) this.queueMark(cid, 'read', list[list.length - 1].message_id);
    this.changed();
  }

  // Unread: none in the conversation on screen; elsewhere the server's count
  // (from the list or a `conversation` frame) or our own count of others'
  // messages past the read mark, whichever is larger. Recounting instead of
  // adding one per message keeps a message that arrives twice (live and
  // in a resume answer, or before and after the list) from counting twice.
  updateUnread(conv) {
    if (conv.conversation_id === this.openConv && this.visible()) {
      conv.unread_count = 0;
    } else {
      conv.unread_count = Math.max(conv.serverUnread || 0, this.localUnread(conv));
    }
  }

  localUnread(conv) {
    const list = this.messages(conv.conversation_id);
    // Like the server: other members' text and media, not entries or
    // notices.
    return list.filter((m) => (!m.body_type || m.body_type === 'text' ||
                               m.body_type === 'media') &&
      (!this.me || m.sender_id !== this.me.user) &&
      (!conv.last_read_message_id ||
       idCmp(m.message_id, conv.last_read_message_id) > 0)).length;
  }

  onStateChange(f) {
    const conv = this.state.convs[f.conversation_id];
    if (!conv) return;
    conv.last_read_message_id = idMax(conv.last_read_message_id,
                                      f.last_read_message_id);
    conv.serverUnread = 0;
    this.updateUnread(conv);
    this.saveSoon();
    this.changed();
  }

  // Receipt marks: how far every other member has got with our messages.
  // Direct chats name the one other member; groups carry counts, and a
  // count that covers every other member moves the whole group's mark.
  onReceipt(f) {
    this.log(`receipt: ${f.member_id} ${f.state} up to ${f.message_id}`);
    const conv = this.state.convs[f.conversation_id];
    if (!conv) return;
    const r = conv.receipts || (conv.receipts = { delivered: null, read: null });
    const others = (conv.members || []).filter((u) => !this.me || u !== this.me.user);
    let everyone;
    if (f.counts) {
      const n = f.state === 'read' ? f.counts.read : f.counts.delivered;
      everyone = n >= others.length;
    } else {
      everyone = true;  // direct: the one other member
    }
    if (everyone) {
      r[f.state] = idMax(r[f.state], f.message_id);
      if (f.state === 'read') r.delivered = idMax(r.delivered, f.message_id);
    }
    if (f.counts) conv.lastCounts = { message_id: f.message_id, counts: f.counts };
    this.saveSoon();
    this.changed();
  }

  // The state of one of our own messages: sent, delivered or read.
  tickState(cid, messageId) {
    const conv = this.state.convs[cid];
    const r = conv && conv.receipts;
    if (r && r.read && idCmp(messageId, r.read) <= 0) return 'read';
    if (r && r.delivered && idCmp(messageId, r.delivered) <= 0) return 'delivered';
    return 'sent';
  }

  // A device that opens a conversation asks once where its latest own
  // message stands, as receipts that came while it was away are not
  // replayed by resume.
  async refreshReceipts(cid) {
    const list = this.messages(cid);
    let last = null;
    for (let i = list.length - 1; i >= 0; i--) {
      if (list[i].sender_id === this.me.user) { last = list[i]; break; }
    }
    if (!last) return;
    try {
      const r = await this.api('GET', `/api/v1/conversations/${
        encodeURIComponent(cid)}/messages/${last.message_id}/receipts`);
      const conv = this.state.convs[cid];
      const others = conv.members.filter((u) => u !== this.me.user).length;
      const marks = conv.receipts || (conv.receipts = { delivered: null, read: null });
      if (r.read >= others) marks.read = idMax(marks.read, last.message_id);
      if (r.delivered >= others) marks.delivered = idMax(marks.delivered, last.message_id);
      this.changed();
    } catch (e) {
      this.log('receipts: ' + e.message);
    }
  }

  // ------------------------------------------------------------ typing --

  // Called on every keystroke in the open conversation's composer.
  typed(cid) {
    const t = this.typingOut;
    const now = Date.now();
    if (t.conv && t.conv !== cid) this.stopTyping();
    if (t.conv !== cid || now - t.lastTrue >= TYPING_REPEAT_MS) {
      if (this.sendFrame({ type: 'typing', conversation_id: cid, is_typing: true })) {
        t.conv = cid;
        t.lastTrue = now;
      }
    }
    clearTimeout(t.idleTimer);
    t.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    const t = this.typingOut;
    clearTimeout(t.idleTimer);
    t.idleTimer = null;
    if (t.conv) {
      this.sendFrame({ type: 'typing', conversation_id: t.conv, is_typing: false });
    }
    t.conv = null;
    t.lastTrue = 0;
  }

  onTyping(f) {
    const users = this.typing[f.conversation_id] ||
                  (this.typing[f.conversation_id] = {});
    if (f.is_typing) {
      users[f.user_id] = Date.now() + TYPING_EXPIRE_MS;
    } else {
      delete users[f.user_id];
    }
    this.changed();
  }

  typingUsers(cid) {
    const now = Date.now();
    return Object.entries(this.typing[cid] || {})
      .filter(([, until]) => until > now).map(([u]) => u).sort();
  }

  // ---------------------------------------------------------- presence --

  subscribePresence(cid) {
    const conv = this.state.convs[cid];
    if (!conv || !this.me) return;
    const users = conv.members.filter((u) => u !== this.me.user).slice(0, 100);
    this.sendFrame({ type: 'presence_subscribe', user_ids: users });
  }

  onPresence(f) {
    this.presence[f.user_id] = { state: f.state, last_active_ts: f.last_active_ts };
    this.changed();
  }

  // --------------------------------------------------- conversations --

  open(cid) {
    if (this.openConv !== cid) this.stopTyping();
    this.openConv = cid;
    const conv = this.state.convs[cid];
    if (!conv) return;
    this.subscribePresence(cid);
    const after = conv.loaded ? Promise.resolve() : this.loadLatest(cid);
    after.catch((e) => this.log('history: ' + e.message))
      .then(() => {
        this.markOpenRead();
        return this.refreshReceipts(cid);
      });
    this.changed();
  }

  async refreshConversations() {
    try {
      const r = await this.api('GET', '/api/v1/conversations?limit=100');
      for (const c of r.conversations) this.onConversation(c);
    } catch (e) {
      this.log('conversation list: ' + e.message);
    }
  }

  async createConversation(type, members, name) {
    const body = { type, members };
    if (type === 'group' && name) body.name = name;
    const c = await this.api('POST', '/api/v1/conversations', body);
    // The creator gets no `conversation` frame: the answer is its news.
    this.onConversation(c);
    const conv = this.state.convs[c.conversation_id];
    if (!c.last_message) conv.loaded = true;
    return c.conversation_id;
  }

  // ------------------------------------------------ members and admins --

  isAdmin(cid, user) {
    const conv = this.state.convs[cid];
    return !!(conv && Array.isArray(conv.admins) && conv.admins.includes(user));
  }

  amAdmin(cid) { return !!this.me && this.isAdmin(cid, this.me.user); }

  // Fetch one conversation anew (after a system message learnt through
  // resume or REST); a 403 or 404 means it is not ours any more.
  async refreshConversation(cid) {
    if (this.refreshing.has(cid)) return;
    this.refreshing.add(cid);
    try {
      this.onConversation(await this.api('GET',
        `/api/v1/conversations/${encodeURIComponent(cid)}`));
    } catch (e) {
      if (e.status === 403 || e.status === 404) this.markLeft(cid);
      else this.log(`conversation ${cid}: ${e.message}`);
    } finally {
      this.refreshing.delete(cid);
    }
  }

  // We are no longer a member: stop resuming it, keep its messages.
  markLeft(cid) {
    const conv = this.state.convs[cid];
    if (!conv) return;
    conv.left = true;
    delete conv.lastSeen;
    if (this.me) {
      conv.members = (conv.members || []).filter((u) => u !== this.me.user);
      if (Array.isArray(conv.admins)) {
        conv.admins = conv.admins.filter((u) => u !== this.me.user);
      }
    }
    this.saveSoon();
    this.changed();
  }

  async makeAdmin(cid, user) {
    this.onConversation(await this.api('POST',
      `/api/v1/conversations/${encodeURIComponent(cid)}/admins`, { user_id: user }));
  }

  async removeAdmin(cid, user) {
    this.onConversation(await this.api('DELETE',
      `/api/v1/conversations/${encodeURIComponent(cid)}/admins/${encodeURIComponent(user)}`));
  }

  async removeMember(cid, user) {
    await this.api('DELETE',
      `/api/v1/conversations/${encodeURIComponent(cid)}/members/${encodeURIComponent(user)}`);
    await this.refreshConversation(cid);
  }

  async leave(cid) {
    await this.api('DELETE', `/api/v1/conversations/${
      encodeURIComponent(cid)}/members/${encodeURIComponent(this.me.user)}`);
    this.markLeft(cid);
  }

  conversations() {
    const key = (c) => (c.last_message ? BigInt(c.last_message.message_id) : 0n);
    return Object.values(this.state.convs).sort((a, b) => {
      const x = key(a), y = key(b);
      return x < y ? 1 : x > y ? -1 : a.conversation_id.localeCompare(b.conversation_id);
    });
  }

  title(conv) {
    if (conv.name) return conv.name;
    const others = (conv.members || []).filter((u) => !this.me || u !== this.me.user);
    return others.join(', ') || conv.conversation_id;
  }

  // -------------------------------------------------------------- REST --

  async api(method, path, body) {
    const opts = { method, headers: { Authorization: 'Bearer ' + this.token } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      data = null;
    }
    if (!res.ok) {
      const err = new Error((data && data.error && data.error.message) ||
                            `HTTP ${res.status}`);
      err.status = res.status;
      err.code = data && data.error && data.error.code;
      throw err;
    }
    return data;
  }
}
