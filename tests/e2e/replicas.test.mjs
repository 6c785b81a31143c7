// Replicas: three more gateway processes (the same release binary) sharing one Redis and one
// client at oidc-provider, `gateway-replicas`, whose back-channel logout URI is the first
// replica's. scripts/e2e starts them with refresh_before_expiry = "1h": every request whose
// cookie was not refreshed yet wants a refresh. HTTP-level; run through scripts/e2e.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Client, ISSUER, env, login, opMetadata, opStats, parseSetCookie, request, sleep } from './lib.mjs';

const SESSION = 'oidc_session';
const JSON_ACCEPT = { accept: 'application/json' };
// How soon a logout made on one replica must be refused on the others.
const PROPAGATION_LIMIT_MS = 1000;

const REPLICAS = () => env('E2E_REPLICAS').split(','); // [R1, R2, R3] origins
const ADMINS = () => env('E2E_REPLICA_ADMINS').split(',');

const delta = (after, before, key) => after[key] - before[key];

/** Logs `user` in at `replica`; returns { client, echo } (echo: what the app saw). */
async function loggedInAt(replica, user) {
  const client = new Client();
  const l = await login(client, '/app/', user, { gateway: replica });
  assert.equal(l.final.status, 200, `login of ${user} at ${replica} ends on the app: ${l.final.status} ${l.final.text.slice(0, 300)}`);
  return { client, echo: l.final.json() };
}

/** The Cookie header of `client` for the replicas (one host: they share the jar's cookies). */
const cookieOf = (client) => client.jar.header(`${REPLICAS()[0]}/`);

/** GET `path` at `replica` with exactly `cookie`, as an API call. */
const withCookie = (replica, path, cookie) => request(`${replica}${path}`, { headers: { ...JSON_ACCEPT, cookie } });

function cookieNamed(res, name) {
  return res.setCookies.map(parseSetCookie).find((c) => c.name === name);
}

/** Answers the provider's logout confirmation page at `url` with "yes, log out". */
async function confirmLogoutAtOp(client, url) {
  const confirm = await client.get(url);
  assert.equal(confirm.status, 200, confirm.text.slice(0, 300));
  const f = confirm.text.match(/<form[^>]*action="([^"]+)"[\s\S]*?name="xsrf" value="([^"]+)"/);
  assert.ok(f, 'the provider shows its logout confirmation form');
  return client.postForm(new URL(f[1], url).href, { xsrf: f[2], logout: 'yes' });
}

/**
 * Polls replica `i` every 50 ms with `cookie` on the 401 route until it refuses it; returns
 * the milliseconds since `since`. Fails once PROPAGATION_LIMIT_MS have passed.
 */
async function refusedAfter(i, cookie, since) {
  const name = `R${i + 1} (${REPLICAS()[i]})`;
  for (;;) {
    const res = await withCookie(REPLICAS()[i], '/strict/poll', cookie);
    const took = Date.now() - since;
    if (res.status === 401) return took;
    assert.equal(res.status, 200, `${name}: ${res.status} ${res.text.slice(0, 200)}`);
    assert.ok(took <= PROPAGATION_LIMIT_MS, `${name} still accepts the logged-out cookie after ${took} ms`);
    await sleep(50);
  }
}

/** Every replica refuses `cookie` within the limit; a browser is sent to log in again. */
async function refusedEverywhere(t, cookie, since, what) {
  const took = await Promise.all([0, 1, 2].map((i) => refusedAfter(i, cookie, since)));
  t.diagnostic(`${what}: refused on R1 after ${took[0]} ms, R2 ${took[1]} ms, R3 ${took[2]} ms`);
  for (const [i, r] of REPLICAS().entries()) {
    const res = await request(`${r}/app/`, { headers: { accept: 'text/html', cookie } });
    assert.equal(res.status, 302, `R${i + 1}: a browser with the refused cookie logs in again`);
    assert.ok(res.location.startsWith(`${ISSUER()}/auth?`), res.location);
    const cleared = cookieNamed(res, SESSION);
    assert.ok(cleared && (cleared.value === '' || cleared.attrs['max-age'] === '0'), `R${i + 1}: the session cookie is cleared`);
  }
}

describe('three replicas on one Redis', () => {
  test('every replica is ready and subscribed to Redis', async () => {
    for (const admin of ADMINS()) {
      const res = await request(`${admin}/readyz`);
      assert.equal(res.status, 200, admin);
      assert.equal(JSON.parse(res.text).checks.redis.status, 'ok', `${admin}: ${res.text}`);
    }
  });

  test('a session begun at R1 is accepted at R2 and R3', async () => {
    const [r1, r2, r3] = REPLICAS();
    const { client, echo } = await loggedInAt(r1, 'rita');
    assert.equal(echo.headers.oidc_claim_sub, 'rita');
    const cookie = cookieOf(client);
    for (const r of [r2, r3]) {
      const res = await withCookie(r, '/app/elsewhere', cookie);
      assert.equal(res.status, 200, `${r}: ${res.text.slice(0, 200)}`);
      const h = res.json().headers;
      assert.equal(h.oidc_claim_sub, 'rita');
      assert.equal(h['x-forwarded-host'], new URL(r).host, 'served by that replica');
      const info = await withCookie(r, '/oauth2/callback?info=json', cookie);
      assert.equal(info.status, 200);
      assert.equal(info.json().id_token.sub, 'rita', 'the info hook reads the same session');
    }
  });

  test('RP-initiated logout at R2: refused on all three within a second; the provider tells R1 by back-channel', async (t) => {
    const [r1, r2] = REPLICAS();
    const { client, echo } = await loggedInAt(r1, 'ruth');
    assert.ok(echo.headers.oidc_claim_sid, 'the ID token carries the sid the logout token names');
    const saved = cookieOf(client);
    const before = await opStats();
    const res = await client.get(`${r2}/oauth2/callback?logout=${encodeURIComponent('/public/logged-out')}`);
    const since = Date.now();
    assert.equal(res.status, 302, res.text.slice(0, 200));
    const md = await opMetadata();
    const url = new URL(res.location);
    assert.equal(`${url.origin}${url.pathname}`, md.end_session_endpoint);
    assert.equal(url.searchParams.get('post_logout_redirect_uri'), `${r2}/public/logged-out`);
    // R2 refuses through its own record; R1 and R3 learn of it through Redis only: the
    // provider has not been told yet.
    await refusedEverywhere(t, saved, since, 'RP-initiated logout at R2');

    const done = await confirmLogoutAtOp(client, res.location);
    const hops = await client.follow(done);
    assert.equal(hops.at(-1).url, `${r2}/public/logged-out`, 'back on R2 after the provider');
    const after = await opStats();
    assert.equal(delta(after, before, 'end_session'), 1);
    assert.equal(delta(after, before, 'backchannel_success'), 1, 'the provider delivered a logout token to R1');
    assert.equal(delta(after, before, 'backchannel_error'), 0);
    for (const r of REPLICAS()) {
      assert.equal((await withCookie(r, '/strict/again', saved)).status, 401, `${r}: still refused`);
    }
  });

  test('logout at the provider only: the back-channel reaches R1, and R3 where the session began refuses the cookie', async (t) => {
    const [r1, r2, r3] = REPLICAS();
    const { client } = await loggedInAt(r3, 'rosa');
    const bystander = await loggedInAt(r2, 'rhea');
    const saved = cookieOf(client);
    assert.equal((await withCookie(r3, '/strict/before', saved)).status, 200);
    const before = await opStats();
    // Logout started at the provider (as another app of the same provider would): no
    // replica sees it but R1, to which the provider posts the logout token.
    const md = await opMetadata();
    const done = await confirmLogoutAtOp(client, md.end_session_endpoint);
    const since = Date.now();
    assert.ok([200, 302, 303].includes(done.status), `${done.status}`);
    const after = await opStats();
    assert.equal(delta(after, before, 'backchannel_success'), 1, 'the provider delivered a logout token to R1');
    assert.equal(delta(after, before, 'backchannel_error'), 0);
    await refusedEverywhere(t, saved, since, 'back-channel logout at R1');
    const other = cookieOf(bystander.client);
    for (const r of [r1, r2, r3]) {
      assert.equal((await withCookie(r, '/strict/bystander', other)).status, 200, `${r}: another user's session is untouched`);
    }
  });

  test('30 concurrent requests with one cookie over R1, R2, R3: one refresh grant, one new access token', async (t) => {
    const replicas = REPLICAS();
    const { client, echo } = await loggedInAt(replicas[0], 'rudy');
    const cookie = cookieOf(client);
    const before = await opStats();
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => withCookie(replicas[i % 3], `/app/burst/${i}`, cookie)),
    );
    const statuses = results.map((r) => r.status);
    assert.deepEqual(statuses, Array(30).fill(200), `statuses: ${statuses.join(',')}`);
    const seen = results.map((r) => r.json().headers);
    for (const [i, h] of seen.entries()) {
      assert.equal(h['x-forwarded-host'], new URL(replicas[i % 3]).host, `request ${i} went to its replica`);
    }
    const tokens = new Set(seen.map((h) => h.oidc_access_token));
    assert.equal(tokens.size, 1, 'every request got the one new access token');
    assert.ok(!tokens.has(echo.headers.oidc_access_token), 'a refreshed token, not the login\'s');
    let after = await opStats();
    t.diagnostic(`30 requests over 3 replicas: ${delta(after, before, 'refresh_token')} refresh_token grant(s) at the provider`);
    assert.equal(delta(after, before, 'refresh_token'), 1, 'exactly one refresh grant at the provider');
    assert.equal(delta(after, before, 'refresh_token_error'), 0, 'no refused grant');
    assert.equal(delta(after, before, 'grants_revoked'), 0, 'no refresh-token reuse detected (grant intact)');

    // R3's answer carries the rotated refresh token, which the provider accepts at R1.
    assert.ok(cookieNamed(results[2], SESSION)?.value, 'R3 answered with the refreshed session cookie');
    const fresh = new Client();
    fresh.jar.store(`${replicas[2]}/`, results[2].setCookies);
    const next = await withCookie(replicas[0], '/app/next', cookieOf(fresh));
    assert.equal(next.status, 200);
    after = await opStats();
    assert.equal(delta(after, before, 'refresh_token'), 2);
    assert.equal(delta(after, before, 'refresh_token_error'), 0);
  });
});
