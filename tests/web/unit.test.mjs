// Unit tests of examples/web/chat.js's pure functions, in Node (no
// browser): the backoff draw, message id order, the token's identity,
// and section 8: edits and deletes converging, goaway's wait.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, goawayDelay, idCmp, isEntry, settle, tokenIdentity }
  from '../../examples/web/chat.js';

test('backoff: full jitter between 100 ms and min(60 s, 1 s * 2^n)', () => {
  const ceilings = [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000];
  ceilings.forEach((ceiling, n) => {
    assert.equal(backoffDelay(n, () => 0), 100, `attempt ${n}, lowest draw`);
    assert.equal(backoffDelay(n, () => 0.999999999), ceiling - 1,
                 `attempt ${n}, highest draw`);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(n);
      assert.ok(d >= 100 && d < ceiling, `attempt ${n}: ${d}`);
    }
  });
  // Huge attempt counts stay at the cap (no Infinity, no NaN).
  assert.equal(backoffDelay(5000, () => 0.5), Math.floor(100 + 0.5 * 59900));
});

test('message ids compare as 64-bit integers, not as doubles or strings', () => {
  assert.equal(idCmp('9', '10'), -1);
  assert.equal(idCmp('120135366219923457', '120135366219923456'), 1);
  // Equal as doubles, different as integers.
  assert.equal(Number('9007199254740993'), Number('9007199254740992'));
  assert.equal(idCmp('9007199254740993', '9007199254740992'), 1);
  assert.equal(idCmp('18446744073709551615', '18446744073709551615'), 0);
});

test('the token names its user and device; anything else names nobody', () => {
  const payload = Buffer.from(JSON.stringify({ u: 'alice', d: 'phone-1', exp_ms: 1 }))
    .toString('base64url');
  assert.deepEqual(tokenIdentity(`${payload}.c2ln`), { user: 'alice', device: 'phone-1' });
  assert.equal(tokenIdentity('not a token'), null);
  assert.equal(tokenIdentity(''), null);
  const noDevice = Buffer.from(JSON.stringify({ u: 'alice' })).toString('base64url');
  assert.equal(tokenIdentity(`${noDevice}.x`), null);
});

// ---- section 8: edits and deletes converge; goaway's wait ----


// Apply every entry to the target the way ChatClient.settleTarget does,
// after each arrival, and return the target's final state.
function converge(order) {
  const held = [];
  let t = null;
  const apply = () => {
    if (!t) return;
    const ch = settle(t, held.filter((e) => e.target_id === t.message_id));
    if (!ch) return;
    for (const e of ch.erase) e.body = '';
    if (ch.deleted) Object.assign(t, { deleted: true, body: '' });
    else Object.assign(t, { body: ch.body, edited_ts: ch.edited_ts, edit_id: ch.edit_id });
  };
  for (const m of order) {
    const c = Object.assign({}, m);
    if (isEntry(c)) held.push(c);
    else t = c;
    apply();
  }
  return { t, held };
}

function permutations(a) {
  if (a.length <= 1) return [a];
  return a.flatMap((x, i) => permutations([...a.slice(0, i), ...a.slice(i + 1)])
    .map((p) => [x, ...p]));
}

const target = { message_id: '10', body: 'original', server_ts: 10 };
const edit = (id, body) => ({ message_id: id, body_type: 'edit', target_id: '10',
                              body, server_ts: Number(id) });
const del = (id) => ({ message_id: id, body_type: 'delete', target_id: '10',
                       body: '', server_ts: Number(id) });

test('the newest edit wins in every order', () => {
  for (const order of permutations([target, edit('11', 'a'), edit('13', 'c'),
                                    edit('12', 'b')])) {
    const { t } = converge(order);
    assert.equal(t.body, 'c');
    assert.equal(t.edited_ts, 13);
    assert.ok(!t.deleted);
  }
});

test('a delete wins in every order and erases every edit body', () => {
  for (const order of permutations([target, edit('11', 'a'), del('12'),
                                    edit('13', 'c')])) {
    const { t, held } = converge(order);
    assert.ok(t.deleted);
    assert.equal(t.body, '');
    assert.deepEqual(held.filter((e) => e.body !== ''), []);
  }
});

test('a target read back edited keeps its newer state', () => {
  const t = { message_id: '10', body: 'current', edited_ts: 500 };
  assert.equal(settle(t, [Object.assign(edit('11', ''), { server_ts: 400 })]), null);
  const ch = settle(t, [Object.assign(edit('12', 'later'), { server_ts: 600 })]);
  assert.equal(ch.body, 'later');
  // Entries and system messages are never targets.
  assert.equal(settle({ message_id: '10', body: 'x', body_type: 'system' },
                      [edit('11', 'y')]), null);
});

test('goaway: a uniform wait in [0, retry_after_ms]', () => {
  assert.equal(goawayDelay(3000, () => 0), 0);
  assert.equal(goawayDelay(3000, () => 0.9999999999), 3000);
  assert.equal(goawayDelay(0, () => 0.7), 0);
  const buckets = new Array(10).fill(0);
  for (let i = 0; i < 5000; i++) {
    const d = goawayDelay(10000);
    assert.ok(d >= 0 && d <= 10000, `${d}`);
    buckets[Math.min(9, Math.floor(d / 1000))]++;
  }
  for (const b of buckets) assert.ok(b > 300 && b < 700, `buckets ${buckets}`);
});
