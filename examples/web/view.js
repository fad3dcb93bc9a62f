// The view half of the libchat web client: draws a ChatClient's state into
// the page and turns the user's clicks and keys into ChatClient calls.
//
// All text that comes from users or the server is set with textContent or
// as attribute values, never parsed as HTML, so a message body is always
// shown as the characters it is.

// A small element builder: el('li', {class: 'x', dataset: {id}}, child...).
// Children are nodes or strings (strings become text nodes).
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return node;
}

const TICKS = { pending: '○', sent: '✓', delivered: '✓✓', read: '✓✓', failed: '!' };
const TICK_TITLES = {
  pending: 'waiting to be sent',
  sent: 'sent: stored by the server',
  delivered: 'delivered to every other member',
  read: 'read by every other member',
  failed: 'refused by the server',
};
const STATUS_TEXT = {
  connecting: 'connecting…',
  online: 'online',
  offline: 'offline: reconnecting',
  unauthorized: 'the token was refused: sign in again',
};

function time(ts) {
  const d = new Date(ts);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export class ChatView {
  constructor(root, client, { onSignOut }) {
    this.root = root;
    this.client = client;
    this.onSignOut = onSignOut;
    this.frame = 0;
    this.$ = (sel) => root.querySelector(sel);

    this.$('#me').textContent = client.me ? `${client.me.user} (${client.me.device})` : '';
    this.$('#sign-out').onclick = () => this.onSignOut();
    this.$('#new-conv').onsubmit = (ev) => this.createConversation(ev);
    this.$('#new-type').onchange = () => this.syncNewForm();
    this.$('#composer').onsubmit = (ev) => this.send(ev);
    this.$('#compose-text').addEventListener('input', () => {
      if (client.openConv && this.$('#compose-text').value) client.typed(client.openConv);
    });
    this.$('#compose-text').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey) {
        ev.preventDefault();
        this.$('#composer').requestSubmit();
      }
    });
    client.on('change', () => this.schedule());
    client.on('error', (f) => this.notice(`${f.code}: ${f.message}`));
    this.syncNewForm();
    this.render();
  }

  // Many changes arrive in a burst (a resume answer); draw once per frame.
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  notice(text) {
    const n = this.$('#notice');
    n.textContent = text;
    n.hidden = !text;
  }

  render() {
    const c = this.client;
    if (c.me) this.$('#me').textContent = `${c.me.user} (${c.me.device})`;
    const status = this.$('#status');
    status.dataset.status = c.status;
    status.textContent = STATUS_TEXT[c.status] || c.status;
    const queued = c.state.outbox.length;
    this.$('#outbox-count').textContent = queued ? `${queued} waiting to be sent` : '';
    this.renderList();
    this.renderChat();
  }

  renderList() {
    const c = this.client;
    const items = c.conversations().map((conv) => {
      const unread = conv.unread_count || 0;
      const last = conv.last_message;
      return el('li', {
        class: 'conv' + (conv.conversation_id === c.openConv ? ' open' : ''),
        dataset: { conversationId: conv.conversation_id, unread: String(unread) },
      },
      el('button', { type: 'button', onclick: () => this.open(conv.conversation_id) },
        el('span', { class: 'conv-title' }, c.title(conv)),
        conv.type === 'group' ? el('span', { class: 'conv-kind' }, 'group') : null,
        unread ? el('span', { class: 'unread', title: 'unread messages' }, String(unread)) : null,
        el('span', { class: 'conv-last' },
          last ? `${last.sender_id}: ${last.body}` : 'no messages yet')));
    });
    const list = this.$('#conversations');
    list.replaceChildren(...items);
    this.$('#no-conversations').hidden = items.length > 0;
  }

  renderChat() {
    const c = this.client;
    const cid = c.openConv;
    const conv = cid && c.state.convs[cid];
    this.$('#chat').hidden = !conv;
    this.$('#placeholder').hidden = !!conv;
    if (!conv) return;

    this.$('#chat-title').textContent = c.title(conv);
    const others = conv.members.filter((u) => u !== c.me.user);
    this.$('#members').replaceChildren(...others.map((u) => {
      const p = c.presence[u];
      const state = p ? p.state : 'unknown';
      return el('li', { class: 'member', dataset: { user: u, presence: state },
                        title: state }, u);
    }));

    const box = this.$('#messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    const group = conv.type === 'group';
    const rows = c.messages(cid).map((m) => this.messageRow(m,
      m.sender_id === c.me.user ? c.tickState(cid, m.message_id) : null, group));
    for (const e of c.pending(cid)) rows.push(this.messageRow(e, 'pending'));
    for (const e of c.failed(cid)) rows.push(this.messageRow(e, 'failed'));
    box.replaceChildren(...rows);
    if (atBottom || this.stickToBottom) {
      box.scrollTop = box.scrollHeight;
      this.stickToBottom = false;
    }

    const typers = c.typingUsers(cid);
    const typing = this.$('#typing');
    typing.textContent = typers.length
      ? `${typers.join(', ')} ${typers.length > 1 ? 'are' : 'is'} typing…` : '';
    typing.dataset.users = typers.join(',');
  }

  // One message; `state` is null for other people's messages, else the
  // tick to show on ours. Groups name the sender of each message.
  messageRow(m, state, showSender = false) {
    const mine = state !== null;
    const meta = el('span', { class: 'meta' },
      m.server_ts ? time(m.server_ts) : '');
    if (mine) {
      meta.append(el('span', { class: 'tick', dataset: { state },
                               title: TICK_TITLES[state] }, TICKS[state]));
    }
    return el('li', {
      class: 'msg' + (mine ? ' mine' : ''),
      dataset: {
        messageId: m.message_id || '',
        clientMsgId: m.client_msg_id || '',
        sender: m.sender_id || this.client.me.user,
        state: state || 'received',
      },
    },
    !mine && showSender ? el('span', { class: 'sender' }, m.sender_id) : null,
    el('span', { class: 'body' }, m.body),
    mine && m.error ? el('span', { class: 'error' }, m.error) : null,
    meta);
  }

  open(cid) {
    this.stickToBottom = true;
    this.client.open(cid);
    this.$('#compose-text').focus();
  }

  send(ev) {
    ev.preventDefault();
    const input = this.$('#compose-text');
    const body = input.value;
    if (!body.trim() || !this.client.openConv) return;
    try {
      this.client.send(this.client.openConv, body);
      input.value = '';
      this.stickToBottom = true;
      this.notice('');
    } catch (e) {
      this.notice(e.message);
    }
  }

  syncNewForm() {
    const group = this.$('#new-type').value === 'group';
    this.$('#new-name').hidden = !group;
    this.$('#new-members').placeholder = group ? 'members: bob, carol' : 'user id: bob';
  }

  async createConversation(ev) {
    ev.preventDefault();
    const type = this.$('#new-type').value;
    const members = this.$('#new-members').value.split(/[\s,]+/).filter(Boolean);
    if (!members.length) return;
    if (type === 'direct' && members.length !== 1) {
      this.notice('a direct conversation has exactly one other member');
      return;
    }
    try {
      const cid = await this.client.createConversation(
        type, members, this.$('#new-name').value.trim());
      this.$('#new-members').value = '';
      this.$('#new-name').value = '';
      this.notice('');
      this.open(cid);
    } catch (e) {
      this.notice('could not create the conversation: ' + e.message);
    }
  }
}
