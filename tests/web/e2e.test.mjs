// End-to-end test of the web client (examples/web) in headless Chromium
// against a real chatd: two browser pages, alice and bob, chat through the
// user interface; bob drops off the network twice while alice keeps
// sending (once resume fills the gap, once the gap is over the resume cap
// and REST history fills it), alice sends while offline (the outbox), and
// an ack is lost on the way (the retry gets `duplicate: true`). Also:
// unread counts, ticks, typing and receipt rates (from the frames the
// pages send), presence, escaping, a group, a reload, a forged token.
// Every message check compares what a page shows with what the server
// stored: nothing lost, nothing twice, in order. docs/web.md has the list.
//
// Environment (meson sets the first three):
//   CHATD         the chatd binary
//   WEB_ROOT      the directory chatd serves (examples/web)
//   ARTIFACT_DIR  where screenshots go (the meson build directory)
//   CHROMIUM      the browser (default /usr/bin/chromium)
//
// Only 127.0.0.1 is used. The chatd started here is stopped by its PID.
// Deadlines are generous: this runs on a loaded two-core machine, and
// under ASan.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// playwright-core comes from npm (package-lock.json); say how to get it.
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  throw new Error('playwright-core is not installed: run `npm ci` in ' +
                  'tests/web (scripts/setup.sh does)\n' + e.message);
}

const CHATD = process.env.CHATD;
const WEB_ROOT = process.env.WEB_ROOT ||
  fileURLToPath(new URL('../../examples/web', import.meta.url));
const ARTIFACT_DIR = process.env.ARTIFACT_DIR || os.tmpdir();
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const T = 30000;                 // for anything that should take a moment
const RESUME_CAP = 3;            // --resume-max-messages: gap 2 goes over it

let tmp, chatd, port, browser;
const pageErrors = [];

// ------------------------------------------------------------- chatd --

function startChatd() {
  const log = fs.openSync(path.join(tmp, 'chatd.log'), 'a');
  const proc = spawn(CHATD, [
    'serve', '--listen', '127.0.0.1:0', '--data-dir', path.join(tmp, 'data'),
    '--static', WEB_ROOT, '--resume-max-messages', String(RESUME_CAP),
    '--presence-offline-ms', '500', '--sync', 'normal', '--log-level', 'info',
  ], { stdio: ['ignore', 'pipe', log] });
  fs.closeSync(log);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => fail('no "listening on" line within 30 s'), 30000);
    function fail(why) {
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(new Error(`chatd did not start: ${why}\n${chatdLog()}`));
    }
    proc.on('exit', (code) => fail(`exited with ${code}`));
    proc.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(out.slice(0, nl));
      if (!m) return fail(`unexpected first line ${JSON.stringify(out)}`);
      clearTimeout(timer);
      proc.removeAllListeners('exit');
      resolve({ proc, port: Number(m[1]) });
    });
  });
}

function chatdLog() {
  try {
    return fs.readFileSync(path.join(tmp, 'chatd.log'), 'utf8').slice(-4000);
  } catch {
    return '';
  }
}

// SIGTERM drains and exits 0; SIGKILL after 20 s if it does not. The
// exit status, or the signal's name.
async function stopChatd() {
  if (!chatd) return null;
  const { proc } = chatd;
  if (proc.exitCode !== null || proc.signalCode) return proc.exitCode ?? proc.signalCode;
  const exited = new Promise((r) => proc.once('exit', (code, sig) => r(code ?? sig)));
  process.kill(proc.pid, 'SIGTERM');
  const t = setTimeout(() => process.kill(proc.pid, 'SIGKILL'), 20000);
  const status = await exited;
  clearTimeout(t);
  return status;
}

// Whether the chatd under test implements PROTOCOL.md section 8 (edit,
// delete, admins, goaway): its serve flags say. The section 8 steps are
// skipped, and say so, against one that does not.
function chatdHasSection8() {
  try {
    const out = execFileSync(CHATD, ['serve', '--help'], { timeout: 30000,
      stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    return out.includes('--edit-window-ms');
  } catch (e) {
    return String((e.stdout || '') + (e.stderr || '')).includes('--edit-window-ms');
  }
}

function token(user, device) {
  return execFileSync(CHATD, ['token', '--data-dir', path.join(tmp, 'data'),
    '--user', user, '--device', device, '--ttl', '3600'],
  { timeout: 30000 }).toString().trim();
}

async function rest(tok, method, p, body) {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, {
    method,
    headers: Object.assign({ Authorization: 'Bearer ' + tok },
      body ? { 'Content-Type': 'application/json' } : {}),
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(T),
  });
  const data = await res.json();
  assert.ok(res.ok, `${method} ${p}: ${res.status} ${JSON.stringify(data)}`);
  return data;
}

// The whole conversation as the server has it, oldest first.
async function serverMessages(tok, cid) {
  const all = [];
  let after = '0';
  for (;;) {
    const r = await rest(tok, 'GET', `/api/v1/conversations/${cid}/messages?after=${after}&limit=200`);
    all.push(...r.messages);
    if (!r.has_more) return all;
    after = r.messages[r.messages.length - 1].message_id;
  }
}

// -------------------------------------------------------------- pages --

async function openUser(user, device) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  page.on('pageerror', (e) => pageErrors.push(`${user}: ${e.stack || e}`));
  page.on('console', (m) => {
    if (process.env.WEB_E2E_VERBOSE) console.log(`[${user}] ${m.text()}`);
  });
  // Every frame the page sends, with the time it left, for the rules on
  // how often receipts and typing may go out. The time is read in the page
  // as it calls send(): events relayed to this process arrive with delays
  // of their own on a loaded machine. It survives reloads of the page.
  const sent = [];
  await context.exposeFunction('__e2eSent', (t, payload) => {
    sent.push({ t, f: JSON.parse(payload) });
  });
  await context.addInitScript(() => {
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data) {
      if (this.readyState === WebSocket.OPEN) window.__e2eSent(Date.now(), String(data));
      return send.call(this, data);
    };
  });
  const tok = token(user, device);
  await page.goto(`http://127.0.0.1:${port}/#token=${tok}`);
  await online(page);
  return { user, tok, context, page, sent };
}

const online = (page) => page.waitForSelector('#status[data-status="online"]');
const offline = (page) => page.waitForSelector('#status[data-status="offline"]');

// What the open conversation shows, top to bottom.
function shown(page) {
  return page.$$eval('#messages li.msg', (els) => els.map((e) => ({
    id: e.dataset.messageId,
    cmid: e.dataset.clientMsgId,
    state: e.dataset.state,
    sender: e.dataset.sender,
    body: e.querySelector('.body').textContent,
  })));
}

async function type(page, text) {
  await page.fill('#compose-text', '');
  await page.type('#compose-text', text, { delay: 5 });
}

async function send(page, text) {
  await type(page, text);
  await page.press('#compose-text', 'Enter');
}

// What a page should show of the server's history: every message but the
// edit and delete entries (section 8), in its current state (REST reads
// back the edited body, or deleted with the placeholder shown instead).
function expectedRows(msgs) {
  return msgs.filter((m) => m.body_type !== 'edit' && m.body_type !== 'delete')
    .map((m) => `${m.message_id} ${m.deleted ? 'message deleted' : m.body}`);
}

// Wait until the page shows exactly the server's messages: same ids, same
// bodies, same order, each once.
async function waitInSync(who, cid) {
  const want = expectedRows(await serverMessages(who.tok, cid));
  try {
    await who.page.waitForFunction((w) => {
      const got = [...document.querySelectorAll('#messages li.msg')]
        .map((e) => `${e.dataset.messageId} ${e.querySelector('.body').textContent}`);
      return JSON.stringify(got) === JSON.stringify(w);
    }, want, { timeout: T });
  } catch (e) {
    const got = (await shown(who.page)).map((m) => `${m.id} ${m.body}`);
    assert.deepEqual(got, want, `${who.user}'s page is not in step with the server`);
    throw e;
  }
  return want;
}

async function screenshot(who, name) {
  const file = path.join(ARTIFACT_DIR, `web-e2e-${name}.png`);
  await who.page.screenshot({ path: file });
  return file;
}

// ------------------------------------------------------------- set-up --

before(async () => {
  assert.ok(CHATD, 'set CHATD to the chatd binary (meson test does)');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'libchat-web-'));
  chatd = await startChatd();
  port = chatd.port;
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Root in a container has no user namespaces for the sandbox.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    timeout: 60000,
  });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  await stopChatd();
  if (tmp && !process.env.WEB_E2E_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
});

// --------------------------------------------------------------- test --

test('two browsers chat through chatd, across disconnects', async (t) => {
  const alice = await openUser('alice', 'alice-web');
  const bob = await openUser('bob', 'bob-web');
  let cid, gid;

  // Each step builds on the ones before: after a failure the rest are
  // skipped (instead of each waiting out its deadline), and both pages are
  // photographed as they were.
  let failed = false;
  const step = (name, fn) => t.test(name, async (st) => {
    if (failed) {
      st.skip('an earlier step failed');
      return;
    }
    try {
      await fn(st);
    } catch (e) {
      failed = true;
      for (const who of [alice, bob]) {
        await screenshot(who, `failed-${who.user}`).catch(() => {});
      }
      throw e;
    }
  });

  await step('alice starts a direct conversation with bob', async () => {
    await alice.page.selectOption('#new-type', 'direct');
    await alice.page.fill('#new-members', 'bob');
    await alice.page.click('#new-conv button[type="submit"]');
    await alice.page.waitForSelector('#chat-title:text-is("bob")');
    cid = await alice.page.evaluate(() => window.chat.client.openConv);
    assert.match(cid, /^[A-Za-z0-9_.:@-]{1,64}$/);
    assert.ok(!alice.page.url().includes('token'), 'the token left the address bar');
    // Bob's page learns of it from the server's `conversation` frame.
    await bob.page.waitForSelector(`#conversations li[data-conversation-id="${cid}"]`);
    // Presence of the open conversation's members.
    await alice.page.waitForSelector('#members li[data-user="bob"][data-presence="online"]');
  });

  const tricky = 'hello <b>bob</b> & <img src=x onerror="window.__xss=1">';

  await step('a message arrives as text, counts as unread, then ticks to read', async () => {
    await send(alice.page, tricky);
    // ✓ once acked, ✓✓ once bob's page (conversation closed) says delivered.
    await alice.page.waitForSelector('#messages li.msg.mine[data-state="delivered"]');
    await bob.page.waitForSelector(`#conversations li[data-conversation-id="${cid}"][data-unread="1"]`);
    await bob.page.click(`#conversations li[data-conversation-id="${cid}"] button`);
    await bob.page.waitForSelector('#messages li.msg');
    const [m] = await shown(bob.page);
    assert.equal(m.body, tricky, 'the body is shown as the characters it is');
    assert.equal(await bob.page.locator('#messages img, #messages b').count(), 0);
    assert.equal(await bob.page.evaluate(() => window.__xss), undefined);
    await bob.page.waitForSelector(`#conversations li[data-conversation-id="${cid}"][data-unread="0"]`);
    // Bob has it open: read, and alice sees the coloured ticks.
    await alice.page.waitForSelector('#messages li.msg.mine[data-state="read"] .tick[data-state="read"]');
    await bob.page.waitForSelector('#members li[data-user="alice"][data-presence="online"]');
  });

  await step('typing shows while bob types and stops when he sends', async () => {
    const from = bob.sent.length;
    // About 4 s of typing: `typing true` at the first key and again once
    // 3 s have passed, not at every key.
    await bob.page.fill('#compose-text', '');
    await bob.page.type('#compose-text', 'on my w', { delay: 650 });
    await alice.page.waitForSelector('#typing[data-users="bob"]');
    await bob.page.press('#compose-text', 'Enter');
    const typing = bob.sent.slice(from).filter((s) => s.f.type === 'typing');
    const flags = typing.map((s) => s.f.is_typing);
    // true, true again once 3 s have passed (a third only if the keys took
    // over 6 s on a loaded machine), false on send.
    assert.ok(flags.length >= 3 && flags.slice(0, -1).every((x) => x === true) &&
              flags[flags.length - 1] === false, `typing frames: ${flags}`);
    for (let i = 1; i < typing.length - 1; i++) {
      const gap = typing[i].t - typing[i - 1].t;
      assert.ok(gap >= 2900, `typing true repeated after ${gap} ms`);
    }
    await alice.page.waitForSelector('#messages li.msg:not(.mine) .body:text-is("on my w")');
    await alice.page.waitForSelector('#typing[data-users=""]');
    await waitInSync(alice, cid);
    await waitInSync(bob, cid);
  });

  await step('bob goes offline; resume fills the gap', async () => {
    await bob.context.setOffline(true);
    await offline(bob.page);
    for (const body of ['while you were out 1', 'while you were out 2']) {
      await send(alice.page, body);
    }
    // Both acked (under the cap of RESUME_CAP messages).
    await alice.page.waitForFunction(() =>
      document.querySelectorAll('#messages li.msg[data-state="pending"]').length === 0);
    await waitInSync(alice, cid);
    await bob.context.setOffline(false);
    await online(bob.page);
    const ids = await waitInSync(bob, cid);
    assert.equal(ids.length, 4);
    const stats = await bob.page.evaluate(() => window.chat.client.stats);
    assert.equal(stats.restFills, 0, 'a gap under the cap needs no REST');
  });

  await step('a gap over the resume cap is filled from REST history', async () => {
    await bob.context.setOffline(true);
    await offline(bob.page);
    for (let i = 1; i <= RESUME_CAP + 2; i++) await send(alice.page, `long gap ${i}`);
    await alice.page.waitForFunction(() =>
      document.querySelectorAll('#messages li.msg[data-state="pending"]').length === 0);
    await bob.context.setOffline(false);
    await online(bob.page);
    const ids = await waitInSync(bob, cid);
    assert.equal(ids.length, 4 + RESUME_CAP + 2);
    const stats = await bob.page.evaluate(() => window.chat.client.stats);
    assert.ok(stats.restFills >= 1, 'resume_failed led to REST history');
    // Bob read them all: alice's last message ends up read.
    await alice.page.waitForSelector(
      '#messages li.msg.mine:last-child[data-state="read"]');
  });

  await step('alice sends while offline; the outbox delivers each once', async () => {
    await alice.context.setOffline(true);
    await offline(alice.page);
    await send(alice.page, 'queued 1');
    await send(alice.page, 'queued 2');
    await alice.page.waitForFunction(() =>
      document.querySelectorAll('#messages li.msg[data-state="pending"]').length === 2);
    const stored = await alice.page.evaluate(() => {
      const c = window.chat.client;
      return JSON.parse(localStorage.getItem(c.storageKey())).outbox.map((e) => e.body);
    });
    assert.deepEqual(stored, ['queued 1', 'queued 2'], 'the outbox is in localStorage');
    await screenshot(alice, 'alice-offline');
    await alice.context.setOffline(false);
    await online(alice.page);
    await alice.page.waitForFunction(() =>
      document.querySelectorAll('#messages li.msg[data-state="pending"]').length === 0);
    const ids = await waitInSync(bob, cid);
    await waitInSync(alice, cid);
    const bodies = (await serverMessages(bob.tok, cid)).map((m) => m.body);
    assert.equal(bodies.filter((b) => b === 'queued 1').length, 1);
    assert.equal(bodies.filter((b) => b === 'queued 2').length, 1);
    assert.deepEqual(bodies.slice(-2), ['queued 1', 'queued 2']);
    assert.equal(ids.length, 4 + RESUME_CAP + 2 + 2);
  });

  await step('a send whose ack is lost is retried: duplicate ack, stored once', async () => {
    // A relay between alice's page and chatd swallows the ack of one
    // message; bob's answer then arrives, so alice's resume mark moves past
    // the lost message; then the connection breaks. The resume answer
    // cannot cover the message, so the outbox must send the same
    // client_msg_id again and take the `duplicate: true` ack for it.
    let victim = null, dropped = false, current = null;
    await alice.page.routeWebSocket(/\/chat\/v1\/ws/, (ws) => {
      const server = ws.connectToServer();
      current = { ws, server };
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        const f = JSON.parse(m);
        if (f.type === 'ack' && f.client_msg_id === victim && !dropped) {
          dropped = true;
          return;
        }
        ws.send(m);
      });
    });
    // New connections go through the relay: reconnect once.
    await alice.page.evaluate(() => window.chat.client.dropConnection('test'));
    await online(alice.page);
    const before = await alice.page.evaluate(() => window.chat.client.stats.duplicates);
    victim = await alice.page.evaluate((c) =>
      window.chat.client.send(c, 'ack went missing'), cid);
    await bob.page.waitForSelector('#messages li.msg .body:text-is("ack went missing")');
    assert.ok(dropped, 'the relay swallowed the ack');
    await send(bob.page, 'bob in between');
    await alice.page.waitForSelector('#messages li.msg .body:text-is("bob in between")');
    current.ws.close({ code: 4000, reason: 'test: connection lost' });
    current.server.close();
    await alice.page.waitForFunction((id) => {
      const e = document.querySelector(`#messages li.msg[data-client-msg-id="${id}"]`);
      return e && e.dataset.state !== 'pending';
    }, victim);
    const stats = await alice.page.evaluate(() => window.chat.client.stats);
    assert.equal(stats.duplicates, before + 1, 'the retry got a duplicate ack');
    await waitInSync(alice, cid);
    await waitInSync(bob, cid);
    const msgs = await serverMessages(bob.tok, cid);
    assert.equal(msgs.filter((m) => m.client_msg_id === victim).length, 1);
    await alice.page.unrouteAll();
    // Bob read it, perhaps while alice was away (receipts are not
    // resumed): her page asks REST after the resume and shows it read.
    await alice.page.waitForSelector(
      `#messages li.msg[data-client-msg-id="${victim}"][data-state="read"]`);
  });

  await step('after a reload bob still shows every message once', async () => {
    await bob.page.reload();
    await online(bob.page);
    await bob.page.click(`#conversations li[data-conversation-id="${cid}"] button`);
    await waitInSync(bob, cid);
  });

  await step('a group conversation names each sender', async () => {
    await alice.page.selectOption('#new-type', 'group');
    await alice.page.fill('#new-members', 'bob, carol');
    await alice.page.fill('#new-name', 'trio <i>');
    await alice.page.click('#new-conv button[type="submit"]');
    await alice.page.waitForSelector('#chat-title:text-is("trio <i>")');
    gid = await alice.page.evaluate(() => window.chat.client.openConv);
    assert.notEqual(gid, cid);
    await send(alice.page, 'hello group');
    await alice.page.waitForSelector('#messages li.msg.mine[data-state="sent"], ' +
                                     '#messages li.msg.mine[data-state="delivered"]');
    const row = `#conversations li[data-conversation-id="${gid}"]`;
    await bob.page.waitForSelector(`${row}[data-unread="1"] .conv-title:text-is("trio <i>")`);
    await bob.page.click(`${row} button`);
    await bob.page.waitForSelector('#messages li.msg .sender:text-is("alice")');
    await waitInSync(bob, gid);
    await alice.page.waitForSelector('#members li[data-user="carol"][data-presence="offline"]');
  });


  // ---------------------------------------------- section 8 in the page --

  const SECTION8 = chatdHasSection8();
  const step8 = SECTION8 ? step
    : (name) => t.test(name, (st) => st.skip('this chatd does not implement section 8'));

  const openConv = async (who, id) => {
    await who.page.click(`#conversations li[data-conversation-id="${id}"] button`);
    await who.page.waitForFunction((c) => window.chat.client.openConv === c, id);
  };
  const row = (id) => `#messages li.msg[data-message-id="${id}"]`;
  const stored = (who) => who.page.evaluate(() =>
    localStorage.getItem(window.chat.client.storageKey()));
  // Send and wait for the ack: the id of the new message.
  const sendAcked = async (who, text) => {
    await send(who.page, text);
    return who.page.waitForFunction((t) => {
      const e = [...document.querySelectorAll('#messages li.msg.mine')]
        .find((x) => x.querySelector('.body').textContent === t &&
                     x.dataset.state !== 'pending');
      return e && e.dataset.messageId;
    }, text).then((h) => h.jsonValue());
  };
  const openMenu = async (who, id) => {
    await who.page.click(`${row(id)} details.msg-menu summary`);
    await who.page.waitForSelector(`${row(id)} details.msg-menu[open]`);
  };

  await step8('admin badges: the creator is admin, and makes bob one', async () => {
    await openConv(bob, gid);
    await bob.page.waitForSelector('#members li[data-user="alice"][data-admin="1"] .badge.admin');
    await bob.page.waitForSelector('#members li[data-user="carol"][data-admin="0"]');
    assert.equal(await bob.page.locator('#members .badge.admin').count(), 1);
    assert.ok(await bob.page.locator('#me-admin').isHidden(), 'bob is no admin');
    assert.equal(await bob.page.locator('#members .member-actions').count(), 0,
                 'only admins get member actions');
    // Not an admin: no menu on someone else's message.
    const hello = (await serverMessages(bob.tok, gid))
      .find((m) => m.body === 'hello group').message_id;
    assert.equal(await bob.page.locator(`${row(hello)} details.msg-menu`).count(), 0);

    await openConv(alice, gid);
    assert.ok(await alice.page.locator('#me-admin').isVisible());
    await alice.page.click('#members li[data-user="bob"] button[data-action="admin"]');
    await alice.page.waitForSelector('#members li[data-user="bob"][data-admin="1"] .badge.admin');
    // Bob's page hears of it live (a `conversation` frame), and both show
    // the change as a notice in the conversation.
    await bob.page.waitForSelector('#me-admin:not([hidden])');
    for (const who of [alice, bob]) {
      await who.page.waitForSelector(
        '#messages li.msg.notice .body:text-is("alice made bob an admin")');
    }
    await waitInSync(alice, gid);
    await waitInSync(bob, gid);
    await screenshot(bob, 'admin-badges');
  });

  await step8('edit and delete from the message menu', async () => {
    await openConv(alice, cid);
    await openConv(bob, cid);
    const a = await sendAcked(alice, 'edit me plz');
    await bob.page.waitForSelector(`${row(a)} .body:text-is("edit me plz")`);
    // In a direct chat nobody but the sender gets a menu.
    assert.equal(await bob.page.locator(`${row(a)} details.msg-menu`).count(), 0);
    await openMenu(alice, a);
    await alice.page.click(`${row(a)} button[data-action="edit"]`);
    await alice.page.waitForSelector('#editing:not([hidden])');
    assert.equal(await alice.page.inputValue('#compose-text'), 'edit me plz');
    await alice.page.fill('#compose-text', 'edited, thanks');
    await alice.page.press('#compose-text', 'Enter');
    for (const who of [alice, bob]) {
      await who.page.waitForSelector(
        `${row(a)}[data-edited="1"] .body:text-is("edited, thanks")`);
      await who.page.waitForSelector(`${row(a)} .meta .edited`);
    }
    const d = await sendAcked(alice, 'delete me soon');
    await bob.page.waitForSelector(`${row(d)} .body:text-is("delete me soon")`);
    await openMenu(alice, d);
    await alice.page.click(`${row(d)} button[data-action="delete"]`);
    await alice.page.click(`${row(d)} button[data-action="confirm-delete"]`);
    for (const who of [alice, bob]) {
      await who.page.waitForSelector(
        `${row(d)}[data-deleted="1"] .placeholder:text-is("message deleted")`);
      assert.ok(!(await stored(who)).includes('delete me soon'),
                `${who.user}'s local store still holds the deleted body`);
    }
    // The server agrees: the target reads back deleted, the entries are in
    // the log, and both pages show its history.
    const msgs = await serverMessages(bob.tok, cid);
    assert.ok(msgs.find((m) => m.message_id === d).deleted);
    assert.equal(msgs.find((m) => m.message_id === a).body, 'edited, thanks');
    assert.ok(msgs.some((m) => m.body_type === 'edit' && m.target_id === a));
    await waitInSync(alice, cid);
    await waitInSync(bob, cid);
    await screenshot(alice, 'edit-delete');
  });

  await step8('a group admin deletes another member\'s message', async () => {
    await openConv(alice, gid);
    await openConv(bob, gid);
    const b = await sendAcked(bob, 'bob says something');
    await alice.page.waitForSelector(`${row(b)} .body:text-is("bob says something")`);
    await openMenu(alice, b);
    assert.equal(await alice.page.locator(`${row(b)} button[data-action="edit"]`).count(), 0,
                 'nobody edits someone else\'s message');
    await alice.page.click(`${row(b)} button[data-action="delete"]`);
    await alice.page.click(`${row(b)} button[data-action="confirm-delete"]`);
    for (const who of [alice, bob]) {
      await who.page.waitForSelector(`${row(b)}[data-deleted="1"]`);
    }
    await waitInSync(alice, gid);
    await waitInSync(bob, gid);
  });

  await step8('a page offline during an edit and a delete converges on reconnect', async () => {
    await openConv(alice, cid);
    await openConv(bob, cid);
    const k1 = await sendAcked(alice, 'keep one');
    const k2 = await sendAcked(alice, 'keep two');
    await bob.page.waitForSelector(`${row(k2)} .body:text-is("keep two")`);
    // Over the resume cap: an edit, a delete and two more messages.
    await bob.context.setOffline(true);
    await offline(bob.page);
    const fills = await bob.page.evaluate(() => window.chat.client.stats.restFills);
    await openMenu(alice, k1);
    await alice.page.click(`${row(k1)} button[data-action="edit"]`);
    await alice.page.fill('#compose-text', 'keep one, edited offline');
    await alice.page.press('#compose-text', 'Enter');
    await alice.page.waitForSelector(`${row(k1)}[data-edited="1"]`);
    await openMenu(alice, k2);
    await alice.page.click(`${row(k2)} button[data-action="delete"]`);
    await alice.page.click(`${row(k2)} button[data-action="confirm-delete"]`);
    await alice.page.waitForSelector(`${row(k2)}[data-deleted="1"]`);
    await sendAcked(alice, 'after the edit 1');
    await sendAcked(alice, 'after the edit 2');
    await bob.context.setOffline(false);
    await online(bob.page);
    await bob.page.waitForSelector(
      `${row(k1)}[data-edited="1"] .body:text-is("keep one, edited offline")`);
    await bob.page.waitForSelector(`${row(k2)}[data-deleted="1"]`);
    await waitInSync(bob, cid);
    assert.ok(await bob.page.evaluate(() => window.chat.client.stats.restFills) > fills,
              'the gap was over the resume cap: REST history filled it');
    assert.ok(!(await stored(bob)).includes('keep two'));
    // Once more under the cap: resume alone brings the edit.
    await bob.context.setOffline(true);
    await offline(bob.page);
    await openMenu(alice, k1);
    await alice.page.click(`${row(k1)} button[data-action="edit"]`);
    await alice.page.fill('#compose-text', 'keep one, edited twice');
    await alice.page.press('#compose-text', 'Enter');
    await alice.page.waitForSelector(`${row(k1)} .body:text-is("keep one, edited twice")`);
    await alice.page.waitForFunction(() =>
      window.chat.client.state.outbox.length === 0);
    const fills2 = await bob.page.evaluate(() => window.chat.client.stats.restFills);
    await bob.context.setOffline(false);
    await online(bob.page);
    await bob.page.waitForSelector(`${row(k1)} .body:text-is("keep one, edited twice")`);
    await waitInSync(bob, cid);
    assert.equal(await bob.page.evaluate(() => window.chat.client.stats.restFills), fills2,
                 'under the cap: no REST');
    await waitInSync(alice, cid);
  });

  await step8('goaway: the page comes back within the advised window, not before', async () => {
    // A relay in front of bob's page: on cue it sends goaway and closes
    // with 1012, as a draining chatd does.
    let current = null;
    const opened = [];
    await bob.page.routeWebSocket(/\/chat\/v1\/ws/, (ws) => {
      opened.push(Date.now());
      const server = ws.connectToServer();
      current = { ws, server };
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => ws.send(m));
    });
    await bob.page.evaluate(() => window.chat.client.dropConnection('test'));
    // Through the relay, and past its resume (the status element may still
    // say online from before the drop: ask the client).
    const until = async (pred, what) => {
      const end = Date.now() + T;
      while (!pred()) {
        if (Date.now() > end) throw new Error('timed out waiting for ' + what);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until(() => current !== null, 'the relayed connection');
    await bob.page.waitForFunction(() =>
      window.chat.client.online() && !window.chat.client.resuming);
    const before = opened.length;
    const window_ = 2500;
    current.ws.send(JSON.stringify({ type: 'goaway', reason: 'drain',
                                     retry_after_ms: window_ }));
    const closedAt = Date.now();
    current.ws.close({ code: 1012, reason: 'test: drain' });
    current.server.close();
    // The wait may be ~0: do not look for the brief offline state.
    await bob.page.waitForFunction(() =>
      window.chat.client.stats.lastGoawayWait !== null);
    await until(() => opened.length > before, 'the reconnect');
    await bob.page.waitForFunction(() => window.chat.client.online());
    const { wait, goaways, next } = await bob.page.evaluate(() => ({
      wait: window.chat.client.stats.lastGoawayWait,
      goaways: window.chat.client.stats.goaways,
      next: window.chat.client.nextAttemptAt,
    }));
    assert.ok(goaways >= 1, 'the goaway was seen');
    assert.ok(wait >= 0 && wait <= window_, `waited ${wait} ms`);
    assert.ok(opened.length > before, 'reconnected');
    const back = opened[before];
    assert.ok(back >= next - 50, `back ${next - back} ms before its time`);
    assert.ok(back - closedAt <= window_ + 2000,
              `back ${back - closedAt} ms after the close`);
    await bob.page.unrouteAll();
    await waitInSync(bob, cid);
  });

  await step('receipts go out at most once a second per conversation', async () => {
    for (const who of [alice, bob]) {
      const flushes = {};
      const inOrder = [...who.sent].sort((a, b) => a.t - b.t);
      for (const { t, f } of inOrder) {
        if (f.type !== 'delivered' && f.type !== 'read') continue;
        const times = flushes[f.conversation_id] || (flushes[f.conversation_id] = []);
        // One flush may send `read` and `delivered` back to back.
        if (!times.length || t - times[times.length - 1] > 100) times.push(t);
      }
      const all = Object.values(flushes);
      assert.ok(all.flat().length >= 2, `${who.user} sent receipts`);
      for (const times of all) {
        for (let i = 1; i < times.length; i++) {
          const gap = times[i] - times[i - 1];
          assert.ok(gap >= 900, `${who.user}: receipt flushes ${gap} ms apart`);
        }
      }
    }
  });

  await step('a forged token is refused, not retried forever', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      page.setDefaultTimeout(T);
      let attempts = 0;
      page.on('websocket', () => attempts++);
      const [payload] = alice.tok.split('.');
      await page.goto(`http://127.0.0.1:${port}/#token=${payload}.AAAA`);
      await page.waitForSelector('#status[data-status="unauthorized"]');
      assert.ok(!page.url().includes('token'), 'the token left the address bar');
      // A retry would come within the first backoff ceilings (1 s, 2 s).
      const seen = attempts;
      await page.waitForTimeout(3000);
      assert.equal(attempts, seen, 'no WebSocket attempts after the 401');
    } finally {
      await context.close();
    }
  });

  await screenshot(alice, 'alice');
  t.diagnostic('screenshot: ' + await screenshot(bob, 'bob'));
  assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  await alice.context.close();
  await bob.context.close();

  await t.test('chatd drains and exits cleanly', async () => {
    const status = await stopChatd();
    // Under ASan a report goes to chatd's stderr (its log file): show it
    // here so that it reaches the test log, and fail.
    const reports = chatdLog().split('\n').filter((l) =>
      /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/.test(l));
    if (reports.length) console.error(chatdLog());
    assert.deepEqual(reports, [], 'sanitizer reports in chatd\'s log');
    assert.equal(status, 0, `chatd exited with ${status}\n${chatdLog()}`);
  });
});
