// Unit tests of examples/web/chat.js's pure functions, in Node (no
// browser): the backoff draw, message id order, the token's identity.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, idCmp, tokenIdentity } from '../../examples/web/chat.js';

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
