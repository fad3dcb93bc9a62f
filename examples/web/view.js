// The view half of the libchat web client: draws a ChatClient's state into
// the page and turns the user's clicks and keys into ChatClient calls.
//
// All text that comes from users or the server is set with textContent or
// as attribute values, never parsed as HTML, so a message body is always
// shown as the characters it is.
//
// Section 8 in the page: a menu on each message (edit and delete your own;
// a group admin may delete anyone's), an "edited" mark, a "message
// deleted" placeholder, system messages as notices, a bot badge, admin
// badges in the member list with make admin / remove for admins, and
// leave.

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
    this.$('#edit-cancel').onclick = () => this.stopEditing();
    this.$('#leave').onclick = () => this.leave();
    this.editing = null;      // {cid, id}: the composer edits that message
    this.menuOpen = null;     // message id whose menu is open
    this.confirming = null;   // message id whose delete awaits confirmation
    this.$('#compose-text').addEventListener('input', () => {
      if (client.openConv && this.$('#compose-text').value) client.typed(client.openConv);
    });
    this.$('#compose-text').addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && this.editing) {
        ev.preventDefault();
        this.stopEditing();
        return;
      }
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
      const preview = !last ? 'no messages yet'
        : last.deleted ? `${last.sender_id}: message deleted`
        : last.body_type === 'system' ? last.body
        : `${last.sender_id}: ${last.body}`;
      return el('li', {
        class: 'conv' + (conv.conversation_id === c.openConv ? ' open' : ''),
        dataset: { conversationId: conv.conversation_id, unread: String(unread) },
      },
      el('button', { type: 'button', onclick: () => this.open(conv.conversation_id) },
        el('span', { class: 'conv-title' }, c.title(conv)),
        conv.type === 'group' ? el('span', { class: 'conv-kind' }, 'group') : null,
        unread ? el('span', { class: 'unread', title: 'unread messages' }, String(unread)) : null,
        el('span', { class: 'conv-last' }, preview)));
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
    const group = conv.type === 'group';
    const iAmAdmin = group && c.amAdmin(cid);
    this.$('#leave').hidden = !group || conv.left;
    this.$('#me-admin').hidden = !iAmAdmin;
    const others = conv.members.filter((u) => u !== c.me.user);
    this.$('#members').replaceChildren(...others.map((u) => {
      const p = c.presence[u];
      const state = p ? p.state : 'unknown';
      const admin = group && c.isAdmin(cid, u);
      return el('li', { class: 'member', dataset: { user: u, presence: state,
                                                    admin: admin ? '1' : '0' },
                        title: state }, u,
        admin ? el('span', { class: 'badge admin', title: 'group admin' }, 'admin') : null,
        iAmAdmin && !conv.left ? el('span', { class: 'member-actions' },
          el('button', { type: 'button', class: 'small', dataset: { action: admin ? 'unadmin' : 'admin' },
                         onclick: () => this.memberAction(cid, u, admin ? 'unadmin' : 'admin') },
            admin ? 'remove admin' : 'make admin'),
          el('button', { type: 'button', class: 'small', dataset: { action: 'remove' },
                         onclick: () => this.memberAction(cid, u, 'remove') }, 'remove')) : null);
    }));
    this.$('#left-notice').hidden = !conv.left;
    this.$('#composer').hidden = !!conv.left;

    const box = this.$('#messages');
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    // Our edits and deletes not acked yet show on their target.
    const pendingOn = {};
    for (const e of c.pending(cid)) {
      if (e.kind === 'edit' || e.kind === 'delete') pendingOn[e.target_id] = e.kind;
    }
    const rows = c.shown(cid).map((m) => this.messageRow(m,
      m.sender_id === c.me.user ? c.tickState(cid, m.message_id) : null, group,
      { cid, iAmAdmin, pending: pendingOn[m.message_id] }));
    for (const e of c.pending(cid)) {
      if (!e.kind || e.kind === 'send') rows.push(this.messageRow(e, 'pending'));
    }
    for (const e of c.failed(cid)) {
      if (e.kind === 'edit' || e.kind === 'delete') {
        rows.push(el('li', { class: 'notice failed', dataset: { target: String(e.target_id) } },
          `could not ${e.kind} a message: ${e.error}`));
      } else {
        rows.push(this.messageRow(e, 'failed'));
      }
    }
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
  // tick to show on ours. Groups name the sender of each message. A
  // system message is a notice; a deleted one a placeholder; an edited one
  // carries a mark. `opts` (stored messages only) says what the menu may
  // offer.
  messageRow(m, state, showSender = false, opts = null) {
    if (m.body_type === 'system') {
      return el('li', { class: 'msg notice', dataset: {
        messageId: m.message_id, sender: m.sender_id, state: 'notice' } },
      el('span', { class: 'body' }, m.body));
    }
    const mine = state !== null;
    const meta = el('span', { class: 'meta' },
      m.edited_ts != null && !m.deleted
        ? el('span', { class: 'edited', title: 'edited ' + time(m.edited_ts) }, 'edited')
        : null,
      m.server_ts ? time(m.server_ts) : '');
    if (mine && !m.deleted) {
      meta.append(el('span', { class: 'tick', dataset: { state },
                               title: TICK_TITLES[state] }, TICKS[state]));
    }
    const bot = m.sender_kind === 'bot';
    const id = m.message_id || '';
    const menu = opts && !m.deleted && id && !opts.pending &&
      (mine || (opts.iAmAdmin && showSender)) ? this.menu(opts.cid, m, mine) : null;
    return el('li', {
      class: 'msg' + (mine ? ' mine' : '') + (m.deleted ? ' deleted' : ''),
      dataset: {
        messageId: id,
        clientMsgId: m.client_msg_id || '',
        sender: m.sender_id || this.client.me.user,
        state: state || 'received',
        edited: m.edited_ts != null && !m.deleted ? '1' : '0',
        deleted: m.deleted ? '1' : '0',
        pending: (opts && opts.pending) || '',
      },
    },
    !mine && (showSender || bot) ? el('span', { class: 'sender' }, m.sender_id,
      bot ? el('span', { class: 'badge bot', title: 'a bot' }, 'bot') : null) : null,
    m.deleted ? el('span', { class: 'body placeholder' }, 'message deleted')
              : el('span', { class: 'body' }, m.body),
    mine && m.error ? el('span', { class: 'error' }, m.error) : null,
    opts && opts.pending ? el('span', { class: 'pending-change' },
      opts.pending === 'edit' ? 'saving edit…' : 'deleting…') : null,
    menu,
    meta);
  }

  // The message menu: <details> keeps it keyboard-friendly (Enter and
  // Space on the summary click it); which one is open survives redraws.
  menu(cid, m, mine) {
    const id = m.message_id;
    const confirming = this.confirming === id;
    const items = [];
    if (mine) {
      items.push(el('button', { type: 'button', dataset: { action: 'edit' },
                                onclick: () => this.startEditing(cid, m) }, 'Edit'));
    }
    items.push(confirming
      ? el('button', { type: 'button', class: 'danger', dataset: { action: 'confirm-delete' },
                       onclick: () => this.deleteMessage(cid, id) }, 'Delete for everyone')
      : el('button', { type: 'button', dataset: { action: 'delete' },
                       onclick: () => { this.confirming = id; this.render(); } }, 'Delete'));
    // The open state lives in the view (the list is redrawn on every
    // change), set at once on click: the details' own toggle event comes
    // a task later, after a redraw could have closed it again.
    const d = el('details', { class: 'msg-menu' },
      el('summary', { title: 'message menu', 'aria-label': 'message menu',
                      onclick: (ev) => {
                        ev.preventDefault();
                        const open = this.menuOpen !== id;
                        this.closeMenu();
                        if (open) this.menuOpen = id;
                        this.render();
                      } }, '⋯'),
      el('div', { class: 'menu-items' }, ...items));
    if (this.menuOpen === id) d.open = true;
    return d;
  }

  closeMenu() {
    this.menuOpen = null;
    this.confirming = null;
  }

  startEditing(cid, m) {
    this.closeMenu();
    this.editing = { cid, id: m.message_id };
    const input = this.$('#compose-text');
    input.value = m.body;
    this.$('#editing').hidden = false;
    this.render();
    input.focus();
  }

  stopEditing() {
    this.editing = null;
    this.$('#editing').hidden = true;
    this.$('#compose-text').value = '';
    this.render();
  }

  deleteMessage(cid, id) {
    this.closeMenu();
    try {
      this.client.deleteMessage(cid, id);
      this.notice('');
    } catch (e) {
      this.notice(e.message);
    }
    this.render();
  }

  async memberAction(cid, user, action) {
    const c = this.client;
    try {
      if (action === 'admin') await c.makeAdmin(cid, user);
      else if (action === 'unadmin') await c.removeAdmin(cid, user);
      else await c.removeMember(cid, user);
      this.notice('');
    } catch (e) {
      this.notice(`could not ${action === 'remove' ? 'remove' : 'change'} ${user}: ${e.message}`);
    }
  }

  async leave() {
    const cid = this.client.openConv;
    if (!cid) return;
    try {
      await this.client.leave(cid);
      this.notice('');
    } catch (e) {
      this.notice('could not leave: ' + e.message);
    }
  }

  open(cid) {
    if (this.editing && this.editing.cid !== cid) this.stopEditing();
    this.closeMenu();
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
      if (this.editing && this.editing.cid === this.client.openConv) {
        this.client.edit(this.editing.cid, this.editing.id, body);
        this.editing = null;
        this.$('#editing').hidden = true;
      } else {
        this.client.send(this.client.openConv, body);
      }
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
