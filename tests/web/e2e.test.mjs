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

// Wait until the page shows exactly the server's messages: same ids, same
// bodies, same order, each once.
async function waitInSync(who, cid) {
  const want = (await serverMessages(who.tok, cid))
    .map((m) => `${m.message_id} ${m.body}`);
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
  let cid;

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
    const gid = await alice.page.evaluate(() => window.chat.client.openConv);
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
