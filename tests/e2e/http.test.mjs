// HTTP-level end-to-end checks (no browser): the gateway against the real oidc-provider,
// driven by a cookie-keeping client that answers the provider's login and consent forms.
// Run through scripts/e2e, which starts the provider, the upstream and the gateway.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  ADMIN, Client, GATEWAY, env, ISSUER, ISSUER2, gatewayMetrics, introspectAtOp, jwtAccessToken, login, opMetadata,
  opStats, parseSetCookie, request, revokeAtOp, sleep,
} from './lib.mjs';

const SESSION = 'oidc_session';
const JSON_ACCEPT = { accept: 'application/json' };

/** Logs `user` in and returns { client, echo, login } where echo is what the app saw. */
async function loggedIn(user, path = '/app/') {
  const client = new Client();
  const l = await login(client, path, user);
  assert.equal(l.final.status, 200, `login of ${user} ends on the app: ${l.final.status} ${l.final.text.slice(0, 300)}`);
  return { client, echo: l.final.json(), login: l };
}

/** GET through the gateway with the client's cookies, as an API call (JSON). */
async function api(client, path, headers = {}) {
  return client.send(`${GATEWAY()}${path}`, { headers: { ...JSON_ACCEPT, ...headers } });
}

function cookieNamed(res, name) {
  return res.setCookies.map(parseSetCookie).find((c) => c.name === name);
}

function assertClears(res, name) {
  const c = cookieNamed(res, name);
  assert.ok(c, `${name} is cleared (Set-Cookie present)`);
  assert.ok(c.value === '' || c.attrs['max-age'] === '0', `${name} is expired: ${JSON.stringify(c)}`);
}

function assertLoginRedirect(res) {
  assert.equal(res.status, 302, `expected a login redirect, got ${res.status}: ${res.text.slice(0, 200)}`);
  assert.ok(res.location.startsWith(`${ISSUER()}/auth?`), `redirects to the provider: ${res.location}`);
}

const delta = (after, before, key) => after[key] - before[key];

describe('gateway and provider are up', () => {
  test('readyz on the admin listener; admin endpoints are not on the proxied port', async () => {
    const ready = await request(`${ADMIN()}/readyz`);
    assert.equal(ready.status, 200);
    const metrics = await gatewayMetrics();
    assert.equal(metrics.provider_ready, 1);
    const proxied = await request(`${GATEWAY()}/metrics`, { headers: JSON_ACCEPT });
    assert.equal(proxied.status, 401, 'the proxied port has no /metrics: it is an app path behind login');
  });
});

describe('login (authorization code flow with PKCE) against oidc-provider', () => {
  test('an unauthenticated browser is sent to the authorization endpoint with state, nonce, PKCE and auth_params', async () => {
    const client = new Client();
    const res = await client.get(`${GATEWAY()}/app/page?x=1`);
    assertLoginRedirect(res);
    const md = await opMetadata();
    const url = new URL(res.location);
    assert.equal(`${url.origin}${url.pathname}`, md.authorization_endpoint);
    const q = url.searchParams;
    assert.equal(q.get('response_type'), 'code');
    assert.equal(q.get('client_id'), 'gateway');
    assert.equal(q.get('redirect_uri'), `${GATEWAY()}/oauth2/callback`);
    assert.deepEqual(q.get('scope').split(' ').sort(), ['email', 'groups', 'offline_access', 'openid', 'profile']);
    assert.ok(q.get('state')?.length >= 16, 'state');
    assert.ok(q.get('nonce')?.length >= 16, 'nonce');
    assert.equal(q.get('code_challenge_method'), 'S256');
    assert.match(q.get('code_challenge'), /^[A-Za-z0-9_-]{43}$/);
    assert.equal(q.get('prompt'), 'consent');
    const state = cookieNamed(res, `oidc_state_${q.get('state')}`);
    assert.ok(state, 'a state cookie named after the state');
    assert.equal(state.attrs.httponly, true);
    assert.equal(state.attrs.samesite, 'Lax');
    assert.equal(state.attrs.path, '/');
    assert.equal(state.attrs.secure, undefined, 'no Secure on plain http');
    assert.match(res.headers['cache-control'] || '', /no-store/);
  });

  test('API clients get 401 and no state cookie; unauth_action 401 and pass', async () => {
    const client = new Client();
    for (const headers of [
      { accept: 'application/json' },
      { 'x-requested-with': 'XMLHttpRequest' },
      { 'sec-fetch-mode': 'cors', accept: '*/*' },
    ]) {
      const res = await client.send(`${GATEWAY()}/app/`, { headers });
      assert.equal(res.status, 401, JSON.stringify(headers));
      assert.equal(res.setCookies.filter((c) => c.startsWith('oidc_state_')).length, 0);
    }
    assert.equal((await client.get(`${GATEWAY()}/strict/`)).status, 401, 'unauth_action = "401" even for a browser');
    const pass = await client.get(`${GATEWAY()}/pass/x`, { accept: 'application/json' });
    assert.equal(pass.status, 200, 'unauth_action = "pass" proxies anonymously');
    assert.equal(pass.json().headers.oidc_claim_sub, undefined);
  });

  test('login form + consent at oidc-provider, back on the original URL with identity headers', async () => {
    const before = await opStats();
    const client = new Client();
    const l = await login(client, '/hello?x=1', 'alice');
    assert.deepEqual(l.pages, ['login', 'consent'], 'the provider asked for login, then consent');
    // The provider answers the gateway's callback with code, state and iss (RFC 9207).
    const cb = new URL(l.callback.url);
    assert.ok(cb.searchParams.get('code') && cb.searchParams.get('state'));
    assert.equal(cb.searchParams.get('iss'), ISSUER());
    assert.equal(l.callback.status, 302);
    assert.equal(l.callback.location, `${GATEWAY()}/hello?x=1`, 'back to the original URL');
    const session = cookieNamed(l.callback, SESSION);
    assert.ok(session?.value, 'a session cookie');
    assert.equal(session.attrs.httponly, true);
    assert.equal(session.attrs.samesite, 'Lax');
    assert.equal(session.attrs.path, '/');
    assertClears(l.callback, `oidc_state_${cb.searchParams.get('state')}`);

    assert.equal(l.final.status, 200);
    const echo = l.final.json();
    assert.equal(echo.path, '/hello');
    assert.equal(echo.query, 'x=1');
    const h = echo.headers;
    assert.equal(h.oidc_claim_sub, 'alice');
    assert.equal(h.oidc_claim_email, 'alice@example.com', 'userinfo claims are merged');
    assert.equal(h.oidc_claim_email_verified, '1', 'booleans as 1/0');
    assert.equal(h.oidc_claim_groups, 'admins,users', 'arrays joined by claim_delimiter');
    assert.equal(h.oidc_claim_name, 'Alice Example');
    assert.equal(h.oidc_claim_iss, ISSUER());
    assert.equal(h['x-remote-user'], 'alice');
    const now = Math.floor(Date.now() / 1000);
    const expires = Number(h.oidc_access_token_expires);
    assert.ok(Math.abs(expires - (now + 300)) <= 5, `access token expiry ~ now + 300 s: ${expires - now}`);
    assert.ok(h.oidc_refresh_token, 'offline_access was granted: the provider issued a refresh token');
    const payload = JSON.parse(h.oidc_id_token_payload);
    assert.equal(payload.iss, ISSUER());
    assert.equal(payload.aud, 'gateway');
    assert.ok(payload.nonce, 'the ID token carries the nonce');
    const introspected = await introspectAtOp(h.oidc_access_token);
    assert.equal(introspected.active, true, 'the access token the app sees is live at the provider');
    assert.equal(introspected.sub, 'alice');
    assert.equal(h['x-forwarded-host'], new URL(GATEWAY()).host);
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.ok(!(h.cookie || '').includes(SESSION), 'the gateway cookies are not forwarded');

    const after = await opStats();
    assert.equal(delta(after, before, 'authorization_code'), 1, 'one code exchange');
    assert.equal(delta(after, before, 'userinfo'), 1, 'one userinfo call');
  });

  test('the callback cannot be replayed (state cookie consumed)', async () => {
    const client = new Client();
    const l = await login(client, '/replay', 'alice');
    assert.equal(l.final.status, 200);
    const again = await client.get(l.callback.url);
    assert.equal(again.status, 400);
    assert.match(again.text, /could not be matched/i);
    assert.match(again.text, /href=/, 'offers a link to start again');
  });

  test('a callback for another browser\'s login is refused', async () => {
    const victim = new Client();
    const start = await victim.get(`${GATEWAY()}/x`);
    const state = new URL(start.location).searchParams.get('state');
    const attacker = new Client();
    const res = await attacker.get(`${GATEWAY()}/oauth2/callback?code=abc&state=${state}`);
    assert.equal(res.status, 400);
    assert.match(res.text, /could not be matched/i);
  });

  test('the user aborts at the provider: the error comes back and is named', async () => {
    const client = new Client();
    const l = await login(client, '/aborted', 'alice', { consent: false });
    assert.equal(l.final.status, 400);
    assert.ok(l.final.url.startsWith(`${GATEWAY()}/oauth2/callback?error=access_denied`), l.final.url);
    assert.match(l.final.text, /access_denied/);
    assert.equal(cookieNamed(l.final, SESSION), undefined, 'no session');
  });
});

describe('identity headers', () => {
  test('client-sent look-alike headers are scrubbed on every route kind', async () => {
    const { client } = await loggedIn('alice');
    const spoof = {
      OIDC_CLAIM_sub: 'root',
      'oidc-claim-email': 'root@example.com',
      OIDC_access_token: 'forged',
      'Oidc_Claim_Groups': 'admins',
      'X-Remote-User': 'root',
      'X-Keep': 'kept',
    };
    const res = await api(client, '/app/spoof', spoof);
    assert.equal(res.status, 200);
    const h = res.json().headers;
    assert.equal(h.oidc_claim_sub, 'alice');
    assert.equal(h.oidc_claim_email, 'alice@example.com');
    assert.notEqual(h.oidc_access_token, 'forged');
    assert.equal(h['oidc-claim-email'], undefined);
    assert.equal(h['x-remote-user'], 'alice');
    assert.equal(h['x-keep'], 'kept');
    for (const path of ['/public/spoof', '/pass/spoof']) {
      const anon = await request(`${GATEWAY()}${path}`, { headers: { ...JSON_ACCEPT, ...spoof } });
      assert.equal(anon.status, 200, path);
      const ah = anon.json().headers;
      for (const name of ['oidc_claim_sub', 'oidc-claim-email', 'oidc_access_token', 'oidc_claim_groups', 'x-remote-user']) {
        assert.equal(ah[name], undefined, `${path}: ${name} removed`);
      }
      assert.equal(ah['x-keep'], 'kept');
    }
  });

  test('non-ASCII claims reach the app as UTF-8 bytes (encoding = "none")', async () => {
    const { echo } = await loggedIn('zoe');
    // node:http hands header bytes over as latin1: undo that to compare the UTF-8 text.
    assert.equal(Buffer.from(echo.headers.oidc_claim_name, 'latin1').toString('utf8'), 'Zoë Ünïcødé 名前');
  });

  test('other cookies reach the app; the gateway\'s do not', async () => {
    const { client } = await loggedIn('alice');
    const cookie = `${client.jar.header(`${GATEWAY()}/`)}; app_pref=dark`;
    const res = await api(client, '/app/cookies', { cookie });
    assert.equal(res.status, 200);
    assert.equal(res.json().headers.cookie, 'app_pref=dark');
  });

  test('[[headers.set]]: claim, nested claim and template headers reach the app; forged copies never do', async () => {
    const forged = { 'X-Email': 'root@evil.test', x_email: 'root@evil.test', 'X-Roles': 'admin', 'X-Who': 'root' };
    const { client, echo } = await loggedIn('alice');
    assert.equal(echo.headers['x-email'], 'alice@example.com');
    assert.equal(echo.headers['x-roles'], 'admin;user');
    assert.equal(echo.headers['x-who'], 'alice <alice@example.com>');
    const res = await api(client, '/app/forged', forged);
    assert.equal(res.status, 200);
    const h = res.json().headers;
    assert.equal(h['x-email'], 'alice@example.com');
    assert.equal(h.x_email, undefined);
    assert.equal(h['x-roles'], 'admin;user');
    assert.equal(h['x-who'], 'alice <alice@example.com>');
    const anon = await request(`${GATEWAY()}/public/forged`, { headers: { ...JSON_ACCEPT, ...forged } });
    assert.equal(anon.status, 200);
    for (const name of ['x-email', 'x_email', 'x-roles', 'x-who']) {
      assert.equal(anon.json().headers[name], undefined, `/public: ${name} removed`);
    }
  });

  test('require_claims on a nested Keycloak-style role claim (realm_access.roles:admin)', async () => {
    const alice = await loggedIn('alice', '/realm-admins/');
    assert.equal(alice.echo.path, '/realm-admins/');
    const mallory = await loggedIn('mallory', '/app/');
    assert.equal(mallory.echo.headers['x-roles'], 'user');
    const res = await api(mallory.client, '/realm-admins/');
    assert.equal(res.status, 403);
  });

  test('require_claims: a satisfied rule passes, a failed one is 403', async () => {
    const alice = await loggedIn('alice', '/admins/');
    assert.equal(alice.echo.path, '/admins/');
    const mallory = await loggedIn('mallory', '/app/');
    const res = await api(mallory.client, '/admins/');
    assert.equal(res.status, 403);
  });
});

describe('sessions', () => {
  test('tampered, truncated and garbage session cookies: login again, cookie cleared, never 5xx', async () => {
    const { client } = await loggedIn('alice');
    const good = client.jar.forHost(GATEWAY())[SESSION];
    const flip = (s, i) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    for (const bad of [flip(good, Math.floor(good.length / 2)), flip(good, good.length - 2), good.slice(0, good.length - 10), 'garbage', '', '%%%']) {
      const res = await request(`${GATEWAY()}/app/`, { headers: { accept: 'text/html', cookie: `${SESSION}=${bad}` } });
      assertLoginRedirect(res);
      if (bad) assertClears(res, SESSION);
    }
    const ok = await api(client, '/app/');
    assert.equal(ok.status, 200, 'the untouched cookie still works');
  });

  test('large claims: the session is split into chunk cookies that all come back', async () => {
    const { client, echo, login: l } = await loggedIn('big-bob');
    const set = l.callback.setCookies.map(parseSetCookie);
    const chunks = set.filter((c) => /^oidc_session_\d+$/.test(c.name));
    const count = set.find((c) => c.name === 'oidc_session_chunks');
    assert.ok(chunks.length >= 2, `chunked: ${set.map((c) => `${c.name}(${c.value.length})`).join(' ')}`);
    assert.equal(count?.value, String(chunks.length));
    for (const c of [...chunks, count]) {
      assert.equal(c.attrs.httponly, true, c.name);
      assert.equal(c.attrs.samesite, 'Lax', c.name);
      assert.ok(c.value.length <= 4000, `${c.name} is ${c.value.length} bytes`);
    }
    assert.equal(echo.headers.oidc_claim_sub, 'big-bob');
    assert.ok(echo.headers.oidc_claim_bio.length >= 6000, 'the big claim reached the app');
    assert.ok(!Object.keys(echo.headers).some((k) => k.startsWith('oidc_session')));
    assert.ok(!(echo.headers.cookie || '').includes('oidc_session'), 'chunks are not forwarded');

    const missing = client.jar.clone();
    missing.delete(GATEWAY(), 'oidc_session_1');
    assertLoginRedirect(await new Client(missing).get(`${GATEWAY()}/app/`));
    const tooMany = client.jar.clone();
    tooMany.set(GATEWAY(), 'oidc_session_chunks', '17');
    assertLoginRedirect(await new Client(tooMany).get(`${GATEWAY()}/app/`));
    assert.equal((await api(client, '/app/')).status, 200);
  });

  test('info hook: json with the configured members, html escaped, 401 without a session, 415 otherwise', async () => {
    const { client, echo } = await loggedIn('alice');
    const res = await api(client, '/oauth2/callback?info=json');
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /application\/json/);
    const info = res.json();
    assert.equal(info.access_token, echo.headers.oidc_access_token);
    assert.equal(info.access_token_expires, echo.headers.oidc_access_token_expires);
    assert.equal(info.id_token.iss, ISSUER());
    assert.equal(info.userinfo.email, 'alice@example.com');
    assert.equal(info.remote_user, 'alice');
    for (const k of ['iat', 'exp', 'timeout']) assert.equal(typeof info[k], 'number', k);
    const html = await client.get(`${GATEWAY()}/oauth2/callback?info=html`);
    assert.equal(html.status, 200);
    assert.match(html.text, /alice@example\.com/);
    assert.equal((await request(`${GATEWAY()}/oauth2/callback?info=json`)).status, 401);
    assert.equal((await api(client, '/oauth2/callback?info=xml')).status, 415);
    assert.equal((await api(client, '/oauth2/callback?nothing=1')).status, 400);
  });
});

describe('refresh hook (?refresh=<return_to>&access_token=<at>)', () => {
  const hook = (returnTo, at) => {
    let q = `refresh=${encodeURIComponent(returnTo)}`;
    if (at !== undefined) q += `&access_token=${encodeURIComponent(at)}`;
    return `/oauth2/callback?${q}`;
  };

  test('success: 302 to return_to, rotated tokens at the provider, the app sees the new token', async () => {
    const { client, echo } = await loggedIn('alice');
    const at = echo.headers.oidc_access_token;
    const rt = echo.headers.oidc_refresh_token;
    const before = await opStats();
    const res = await api(client, hook('/app/after?y=2', at));
    assert.equal(res.status, 302, res.text);
    assert.equal(res.location, `${GATEWAY()}/app/after?y=2`, 'return_to unchanged');
    assert.ok(cookieNamed(res, SESSION)?.value, 'a new session cookie');
    const after = await opStats();
    assert.equal(delta(after, before, 'refresh_token'), 1, 'one refresh grant');
    const next = (await api(client, '/app/after')).json().headers;
    assert.notEqual(next.oidc_access_token, at, 'new access token');
    assert.notEqual(next.oidc_refresh_token, rt, 'rotated refresh token');
    assert.equal((await introspectAtOp(next.oidc_access_token)).active, true);
    assert.equal(next.oidc_claim_sub, 'alice', 'same subject after the refreshed ID token');
  });

  test('error codes, in the order of docs/behaviour.md §6', async () => {
    const { client, echo } = await loggedIn('alice');
    const at = echo.headers.oidc_access_token;
    // 400 page, no redirect.
    for (const bad of ['', '//evil.example/', 'https://evil.example/x', '/\\evil.example', 'javascript:alert(1)']) {
      const res = await api(client, hook(bad, at));
      assert.equal(res.status, 400, `return_to ${JSON.stringify(bad)}`);
      assert.equal(res.headers.location, undefined);
    }
    const code = (res) => {
      assert.equal(res.status, 302, res.text);
      return new URL(res.location).searchParams.get('error_code');
    };
    assert.equal(code(await api(client, hook('/app/r'))), 'no_access_token');
    const withQuery = await api(client, hook('/app/r?a=1'));
    assert.equal(withQuery.location, `${GATEWAY()}/app/r?a=1&error_code=no_access_token`, 'appended with &');
    assert.equal(code(await request(`${GATEWAY()}${hook('/app/r', at)}`)), 'no_access_token_exists', 'no session');
    assert.equal(code(await api(client, hook('/app/r', `${at}x`))), 'no_access_token_match');
    const good = client.jar.forHost(GATEWAY())[SESSION];
    const tampered = good.slice(0, 20) + (good[20] === 'A' ? 'B' : 'A') + good.slice(21);
    assert.equal(code(await request(`${GATEWAY()}${hook('/app/r', at)}`, { headers: { cookie: `${SESSION}=${tampered}` } })), 'session_corruption');
    // The provider refuses the grant: revoke the refresh token (and so the grant) there.
    const revoked = await revokeAtOp(echo.headers.oidc_refresh_token, 'refresh_token');
    assert.equal(revoked.status, 200);
    const before = await opStats();
    assert.equal(code(await api(client, hook('/app/r', at))), 'refresh_failed');
    const after = await opStats();
    assert.equal(delta(after, before, 'refresh_token_error'), 1, 'the provider refused one grant');
  });
});

describe('a provider that does not rotate refresh tokens', () => {
  // keep* accounts: oidc-provider hands the same refresh token back (its default for
  // confidential clients). Each refresh must still be a grant of its own.
  test('two refresh hook calls make two grants and two new access tokens', async () => {
    const { client, echo } = await loggedIn('keep-kim');
    const rt = echo.headers.oidc_refresh_token;
    let at = echo.headers.oidc_access_token;
    const before = await opStats();
    for (let i = 1; i <= 2; i += 1) {
      const res = await api(client, `/oauth2/callback?refresh=%2Fapp%2F&access_token=${encodeURIComponent(at)}`);
      assert.equal(res.status, 302, res.text);
      assert.equal(new URL(res.location).searchParams.get('error_code'), null, res.location);
      const next = (await api(client, '/app/')).json().headers;
      assert.notEqual(next.oidc_access_token, at, `refresh ${i} gave a new access token`);
      assert.equal(next.oidc_refresh_token, rt, 'the provider kept the refresh token');
      assert.equal((await introspectAtOp(next.oidc_access_token)).active, true);
      at = next.oidc_access_token;
    }
    const after = await opStats();
    assert.equal(delta(after, before, 'refresh_token'), 2, 'one grant per refresh');
    assert.equal(delta(after, before, 'refresh_token_error'), 0);
  });
});

describe('sessions without a refresh token', () => {
  test('no refresh token issued (no offline_access grant): the refresh hook answers refresh_failed', async () => {
    const { client, echo } = await loggedIn('nort-nina');
    assert.equal(echo.headers.oidc_refresh_token, undefined, 'the provider issued no refresh token');
    const at = echo.headers.oidc_access_token;
    const before = await opStats();
    const res = await api(client, `/oauth2/callback?refresh=%2Fapp%2F&access_token=${encodeURIComponent(at)}`);
    assert.equal(res.status, 302);
    assert.equal(new URL(res.location).searchParams.get('error_code'), 'refresh_failed');
    const after = await opStats();
    assert.equal(delta(after, before, 'refresh_token') + delta(after, before, 'refresh_token_error'), 0, 'nothing was sent to the provider');
    assert.equal((await api(client, '/app/')).status, 200, 'the session itself is fine');
  });
});

describe('automatic refresh with rotating refresh tokens', () => {
  // Accounts named short* get access tokens that live 20 s at the provider; the gateway
  // refreshes 30 s before expiry, so every request with such a session refreshes inline.
  test('an access token about to expire is refreshed inline; the response carries the new cookie', async () => {
    const { client, echo } = await loggedIn('short-sam');
    // The login's own redirect back already refreshed once (the token is born inside the window).
    const first = echo.headers.oidc_access_token;
    const before = await opStats();
    const res = await api(client, '/app/auto');
    assert.equal(res.status, 200);
    assert.ok(cookieNamed(res, SESSION)?.value, 'a new session cookie');
    const h = res.json().headers;
    assert.notEqual(h.oidc_access_token, first);
    assert.equal((await introspectAtOp(h.oidc_access_token)).active, true);
    const after = await opStats();
    assert.equal(delta(after, before, 'refresh_token'), 1);
    assert.equal(delta(after, before, 'refresh_token_error'), 0);
  });

  test('20 concurrent requests with the same rotating refresh token: all 200, exactly one grant', async () => {
    const { client } = await loggedIn('short-burst');
    const cookie = client.jar.header(`${GATEWAY()}/`);
    const before = await opStats();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => request(`${GATEWAY()}/app/burst/${i}`, { headers: { ...JSON_ACCEPT, cookie } })),
    );
    const statuses = results.map((r) => r.status);
    assert.deepEqual(statuses, Array(20).fill(200), `statuses: ${statuses.join(',')}`);
    const tokens = new Set(results.map((r) => r.json().headers.oidc_access_token));
    assert.equal(tokens.size, 1, 'every request got the one new access token');
    let after = await opStats();
    assert.equal(delta(after, before, 'refresh_token'), 1, 'exactly one refresh grant at the provider');
    assert.equal(delta(after, before, 'refresh_token_error'), 0, 'no refused grant');
    assert.equal(delta(after, before, 'grants_revoked'), 0, 'no refresh-token reuse detected (grant intact)');

    // A late request still carrying the old cookie reuses the result: no second grant.
    const late = await request(`${GATEWAY()}/app/late`, { headers: { ...JSON_ACCEPT, cookie } });
    assert.equal(late.status, 200);
    assert.ok(tokens.has(late.json().headers.oidc_access_token));
    after = await opStats();
    assert.equal(delta(after, before, 'refresh_token'), 1, 'the old cookie reused the result');

    // The new cookie carries the rotated refresh token, which the provider accepts.
    const fresh = new Client();
    fresh.jar.store(`${GATEWAY()}/`, results[7].setCookies);
    const next = await api(fresh, '/app/next');
    assert.equal(next.status, 200);
    after = await opStats();
    assert.equal(delta(after, before, 'refresh_token'), 2);
    assert.equal(delta(after, before, 'refresh_token_error'), 0);
  });

  test('the provider refuses the refresh: the request passes with the old token while it is valid', async () => {
    const { client, echo } = await loggedIn('short-refused');
    const res0 = await api(client, '/app/0');
    const h0 = res0.json().headers;
    await revokeAtOp(h0.oidc_refresh_token, 'refresh_token');
    // Revoking the refresh token revoked the grant, and with it the access token; the
    // gateway cannot know that without asking, so the old (unexpired) token passes.
    const before = await opStats();
    const res = await api(client, '/app/1');
    assert.equal(res.status, 200);
    assert.equal(res.json().headers.oidc_access_token, h0.oidc_access_token, 'the old token');
    const after = await opStats();
    assert.equal(delta(after, before, 'refresh_token_error'), 1);
  });

  test('the provider refuses the refresh and the token has expired: log in again', async () => {
    const { client } = await loggedIn('tiny-tim'); // 2 s access tokens
    const h0 = (await api(client, '/app/0')).json().headers;
    await revokeAtOp(h0.oidc_refresh_token, 'refresh_token');
    await sleep(Math.max(0, Number(h0.oidc_access_token_expires) * 1000 - Date.now()) + 1100);
    const res = await client.get(`${GATEWAY()}/app/1`);
    assertLoginRedirect(res);
    assertClears(res, SESSION);
    assert.equal((await api(client, '/app/2')).status, 401, 'and an API call gets 401');
  });
});

describe('bearer-token routes (auth = "oauth20") with introspection at oidc-provider', () => {
  const bearer = (token) => ({ authorization: `Bearer ${token}`, ...JSON_ACCEPT });

  test('no token, unknown token, valid token; results are cached', async () => {
    const none = await request(`${GATEWAY()}/api/x`, { headers: JSON_ACCEPT });
    assert.equal(none.status, 401);
    assert.match(none.headers['www-authenticate'], /Bearer error="invalid_request"/);
    const bogus = await request(`${GATEWAY()}/api/x`, { headers: bearer('not-a-token-the-op-knows') });
    assert.equal(bogus.status, 401);
    assert.match(bogus.headers['www-authenticate'], /Bearer error="invalid_token"/);

    const { echo } = await loggedIn('alice');
    const at = echo.headers.oidc_access_token;
    const before = await opStats();
    const ok = await request(`${GATEWAY()}/api/items`, { headers: bearer(at) });
    assert.equal(ok.status, 200, ok.text);
    const h = ok.json().headers;
    assert.equal(h.oidc_claim_sub, 'alice');
    assert.equal(h.oidc_claim_client_id, 'gateway');
    assert.equal(h.oidc_access_token, at);
    assert.equal(h.oidc_access_token_expires, echo.headers.oidc_access_token_expires);
    assert.equal(h.authorization, `Bearer ${at}`, 'the Authorization header reaches the API');
    for (let i = 0; i < 5; i += 1) {
      assert.equal((await request(`${GATEWAY()}/api/items/${i}`, { headers: bearer(at) })).status, 200);
    }
    const after = await opStats();
    assert.equal(delta(after, before, 'introspection'), 1, 'six requests, one introspection');
  });

  test('a refresh token is not an access token: refused although the provider calls it active', async () => {
    const { echo } = await loggedIn('alice');
    const rt = echo.headers.oidc_refresh_token;
    const introspected = await introspectAtOp(rt);
    assert.equal(introspected.active, true, 'oidc-provider answers active: true for a refresh token');
    assert.equal(introspected.token_type, undefined, '... and marks it only by leaving token_type out');
    const res = await request(`${GATEWAY()}/api/rt`, { headers: bearer(rt) });
    assert.equal(res.status, 401, res.text);
    assert.match(res.headers['www-authenticate'], /invalid_token/);
  });

  test('concurrent requests with one uncached token make one introspection call', async () => {
    const { echo } = await loggedIn('alice');
    const at = echo.headers.oidc_access_token;
    const before = await opStats();
    const results = await Promise.all(Array.from({ length: 10 }, () => request(`${GATEWAY()}/api/c`, { headers: bearer(at) })));
    assert.deepEqual(results.map((r) => r.status), Array(10).fill(200));
    const after = await opStats();
    assert.equal(delta(after, before, 'introspection'), 1);
  });

  test('revocation at the provider + remove_at_cache: the next request is validated afresh', async () => {
    const { echo } = await loggedIn('alice');
    const at = echo.headers.oidc_access_token;
    assert.equal((await request(`${GATEWAY()}/api/r`, { headers: bearer(at) })).status, 200);
    const revoked = await revokeAtOp(at, 'access_token');
    assert.equal(revoked.status, 200);
    assert.equal((await introspectAtOp(at)).active, false, 'revoked at the provider');
    assert.equal((await request(`${GATEWAY()}/api/r`, { headers: bearer(at) })).status, 200, 'still cached');
    const hook = (t) => request(`${GATEWAY()}/oauth2/callback?remove_at_cache=${encodeURIComponent(t)}`);
    assert.equal((await hook(at)).status, 200, 'removed');
    assert.equal((await hook(at)).status, 404, 'not cached any more');
    assert.equal((await request(`${GATEWAY()}/oauth2/callback?remove_at_cache=`)).status, 400);
    const before = await opStats();
    const res = await request(`${GATEWAY()}/api/r`, { headers: bearer(at) });
    assert.equal(res.status, 401);
    assert.match(res.headers['www-authenticate'], /invalid_token/);
    const after = await opStats();
    assert.equal(delta(after, before, 'introspection'), 1, 'validated afresh');
  });
});

describe('bearer-token routes with JWT access tokens (oauth.jwt = true)', () => {
  const bearer = (token) => ({ authorization: `Bearer ${token}`, ...JSON_ACCEPT });

  test('an oidc-provider JWT access token is verified locally against its JWKS (no introspection)', async () => {
    const jwt = await jwtAccessToken();
    assert.equal(jwt.split('.').length, 3, 'the provider issued a JWT');
    const before = await opStats();
    const ok = await request(`${GATEWAY()}/api/jwt`, { headers: bearer(jwt) });
    assert.equal(ok.status, 200, ok.text);
    const h = ok.json().headers;
    assert.equal(h.oidc_claim_client_id, 'api-client');
    assert.equal(h.oidc_claim_aud, 'urn:e2e:api');
    assert.equal(h.oidc_claim_iss, ISSUER());
    assert.equal(h.oidc_claim_scope, 'api:read');
    assert.equal(h.oidc_access_token, jwt);
    const after = await opStats();
    assert.equal(delta(after, before, 'introspection'), 0, 'validated locally');

    const [head, body, sig] = jwt.split('.');
    const claims = JSON.parse(Buffer.from(body, 'base64url').toString());
    const forged = `${head}.${Buffer.from(JSON.stringify({ ...claims, scope: 'api:admin' })).toString('base64url')}.${sig}`;
    const res = await request(`${GATEWAY()}/api/jwt`, { headers: bearer(forged) });
    assert.equal(res.status, 401, 'a JWT whose payload was changed is refused');
    const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${body}.`;
    assert.equal((await request(`${GATEWAY()}/api/jwt`, { headers: bearer(none) })).status, 401, 'alg none is refused');
  });

  test('an ID token of the same provider is not accepted as a JWT access token (audience)', async () => {
    const { echo } = await loggedIn('alice');
    const idToken = echo.headers.oidc_id_token;
    assert.equal(idToken.split('.').length, 3);
    const res = await request(`${GATEWAY()}/api/jwt`, { headers: bearer(idToken) });
    assert.equal(res.status, 401, 'aud is the gateway client, not the API (oauth.audience)');
  });
});

describe('logout', () => {
  test('a logout target that fails validation: 400 and the session is kept', async () => {
    const { client } = await loggedIn('alice');
    const res = await client.get(`${GATEWAY()}/oauth2/callback?logout=${encodeURIComponent('https://evil.example/')}`);
    assert.equal(res.status, 400);
    assert.equal(cookieNamed(res, SESSION), undefined);
    assert.equal((await api(client, '/app/')).status, 200);
  });

  test('revokes at the provider, ends the session via end_session, and a replayed cookie is refused', async () => {
    const { client, echo } = await loggedIn('alice');
    const oldCookie = client.jar.header(`${GATEWAY()}/`);
    const before = await opStats();
    const res = await client.get(`${GATEWAY()}/oauth2/callback?logout=${encodeURIComponent('/public/logged-out')}`);
    assert.equal(res.status, 302);
    assertClears(res, SESSION);
    const md = await opMetadata();
    const url = new URL(res.location);
    assert.equal(`${url.origin}${url.pathname}`, md.end_session_endpoint);
    assert.equal(url.searchParams.get('post_logout_redirect_uri'), `${GATEWAY()}/public/logged-out`);
    assert.ok(url.searchParams.get('id_token_hint'), 'id_token_hint');
    let after = await opStats();
    assert.equal(delta(after, before, 'revocation'), 1, 'the refresh token was revoked');
    assert.equal((await introspectAtOp(echo.headers.oidc_access_token)).active, false, 'the grant is gone at the provider');

    // The provider asks to confirm, then sends the browser back.
    const confirm = await client.get(res.location);
    assert.equal(confirm.status, 200, confirm.text.slice(0, 300));
    const f = confirm.text.match(/<form[^>]*action="([^"]+)"[\s\S]*?name="xsrf" value="([^"]+)"/);
    assert.ok(f, 'the provider shows its logout confirmation form');
    const done = await client.postForm(new URL(f[1], res.location).href, { xsrf: f[2], logout: 'yes' });
    const hops = await client.follow(done);
    const last = hops.at(-1);
    assert.equal(last.url, `${GATEWAY()}/public/logged-out`);
    assert.equal(last.status, 200);
    after = await opStats();
    assert.equal(delta(after, before, 'end_session'), 1);

    const replay = await request(`${GATEWAY()}/app/`, { headers: { accept: 'text/html', cookie: oldCookie } });
    assertLoginRedirect(replay);
    const replayApi = await request(`${GATEWAY()}/app/`, { headers: { ...JSON_ACCEPT, cookie: oldCookie } });
    assert.equal(replayApi.status, 401);
    const refresh = await request(`${GATEWAY()}/oauth2/callback?refresh=%2F&access_token=${encodeURIComponent(echo.headers.oidc_access_token)}`, { headers: { cookie: oldCookie } });
    assert.equal(new URL(refresh.location).searchParams.get('error_code'), 'no_access_token_exists');

    // The provider's session ended too: the next login asks for credentials again.
    const again = await login(client, '/app/again', 'alice');
    assert.deepEqual(again.pages, ['login', 'consent']);
    assert.equal(again.final.status, 200);
  });

  test('logout with an empty target still goes through end_session; no session: straight to the page', async () => {
    const { client } = await loggedIn('alice');
    const res = await client.get(`${GATEWAY()}/oauth2/callback?logout=`);
    assert.equal(res.status, 302);
    assert.ok(res.location.startsWith((await opMetadata()).end_session_endpoint));
    assert.equal(new URL(res.location).searchParams.get('post_logout_redirect_uri'), null);
    const anon = await request(`${GATEWAY()}/oauth2/callback?logout=`);
    assert.equal(anon.status, 200);
    assert.match(anon.text, /Logged out/);
  });

  test('back-channel logout: the user logs out at the provider, which tells the gateway; the cookie is refused', async () => {
    const { client, echo } = await loggedIn('alice');
    const bystander = await loggedIn('bob');
    const cookie = client.jar.header(`${GATEWAY()}/`);
    const before = await opStats();
    // Logout started at the provider (as another app of the same provider would), not here.
    const md = await opMetadata();
    const confirm = await client.get(md.end_session_endpoint);
    assert.equal(confirm.status, 200);
    const f = confirm.text.match(/<form[^>]*action="([^"]+)"[\s\S]*?name="xsrf" value="([^"]+)"/);
    assert.ok(f, 'the provider shows its logout confirmation form');
    const done = await client.postForm(new URL(f[1], md.end_session_endpoint).href, { xsrf: f[2], logout: 'yes' });
    assert.ok([200, 302, 303].includes(done.status));
    const after = await opStats();
    assert.equal(delta(after, before, 'backchannel_success'), 1, 'the provider delivered a logout token to the gateway');
    assert.equal(delta(after, before, 'backchannel_error'), 0);
    const res = await request(`${GATEWAY()}/app/`, { headers: { accept: 'text/html', cookie } });
    assertLoginRedirect(res);
    assert.equal((await api(bystander.client, '/app/')).status, 200, 'another user\'s session is untouched');
    assert.ok(echo.headers.oidc_claim_sid, 'the ID token carried the sid the logout token names');
  });
});

describe('routes: hosts and anonymous methods', () => {
  test('a CORS preflight passes a protected route without a session; the real request does not', async () => {
    const preflight = await request(`${GATEWAY()}/cors/items`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://spa.example.com',
        'access-control-request-method': 'POST',
        oidc_claim_sub: 'mallory',
      },
    });
    assert.equal(preflight.status, 200);
    const echo = preflight.json();
    assert.equal(echo.method, 'OPTIONS');
    assert.equal(echo.headers.oidc_claim_sub, undefined, 'no identity, and the forged one is gone');
    const real = await request(`${GATEWAY()}/cors/items`, { method: 'POST', headers: JSON_ACCEPT, body: '{}' });
    assert.equal(real.status, 401);
  });

  test('a host-based route answers for its host only', async () => {
    const vhost = `vhost.e2e.test:${new URL(GATEWAY()).port}`;
    const anon = await request(`${GATEWAY()}/x`, { headers: { host: vhost, accept: 'text/html' } });
    assert.equal(anon.status, 302);
    const redirectUri = new URL(anon.location).searchParams.get('redirect_uri');
    assert.equal(redirectUri, `http://${vhost}/oauth2/callback`);
    const shadowed = await request(`${GATEWAY()}/public/x`, { headers: { host: vhost, accept: 'text/html' } });
    assert.equal(shadowed.status, 302, 'the virtual host\'s "/" takes /public too: the most specific host wins');
    const open = await request(`${GATEWAY()}/public/x`);
    assert.equal(open.status, 200, 'on the gateway\'s own address /public is open');
  });
});

describe('several providers: a second oidc-provider instance (another issuer)', () => {
  test('the chooser lists both providers, escaped; a login at the second one through it reaches the app with its identity', async () => {
    const client = new Client();
    const page = await client.get(`${GATEWAY()}/choose/page?x=1`);
    assert.equal(page.status, 200, page.text.slice(0, 300));
    assert.equal(page.headers['cache-control'], 'no-store');
    assert.match(page.headers['content-security-policy'], /default-src 'none'/);
    assert.equal(page.setCookies.length, 0, 'no state cookie before a choice');
    const links = [...page.text.matchAll(/<a href="([^"]*)">([^<]*)<\/a>/g)]
      .map((m) => ({ href: m[1].replace(/&amp;/g, '&'), title: m[2] }));
    assert.deepEqual(links.map((l) => l.title), ['Main provider', 'Second provider &lt;&amp;&gt; co']);
    assert.equal(links[1].href, `/oauth2/callback?provider=second&target_link_uri=${encodeURIComponent('/choose/page?x=1')}`);

    const before = await opStats(ISSUER2());
    const firstBefore = await opStats();
    const l = await login(client, links[1].href, 'sam', { issuer: ISSUER2() });
    assert.ok(l.authorize.startsWith(`${ISSUER2()}/auth?`), `the login goes to the second provider: ${l.authorize}`);
    assert.deepEqual(l.pages, ['login', 'consent']);
    assert.equal(l.callback.location, `${GATEWAY()}/choose/page?x=1`, 'back to the page first asked for');
    assert.equal(l.final.status, 200);
    const echo = l.final.json();
    assert.equal(echo.path, '/choose/page');
    assert.equal(echo.query, 'x=1');
    assert.equal(echo.headers.oidc_claim_iss, ISSUER2(), 'the upstream sees the second issuer');
    assert.equal(echo.headers.oidc_claim_sub, 'sam');
    assert.equal(JSON.parse(echo.headers.oidc_id_token_payload).iss, ISSUER2());
    const after = await opStats(ISSUER2());
    assert.equal(delta(after, before, 'authorization_code'), 1, 'the code was exchanged at the second provider');
    assert.equal(delta(after, before, 'userinfo'), 1);
    assert.equal(delta(await opStats(), firstBefore, 'authorization_code'), 0, 'the first provider was not involved');

    // The route only for the second provider takes this session; a route for the default
    // (first) provider does not: an API call is refused, a browser is sent to log in there.
    const second = await client.get(`${GATEWAY()}/second/x`);
    assert.equal(second.status, 200);
    assert.equal(second.json().headers.oidc_claim_iss, ISSUER2());
    assert.equal((await api(client, '/app/')).status, 401);
    assertLoginRedirect(await client.get(`${GATEWAY()}/app/`));
  });

  test('back-channel logout at the second provider ends its session only', async () => {
    const first = await loggedIn('alice');
    const client = new Client();
    const l = await login(client, '/second/y', 'sam', { issuer: ISSUER2() });
    assert.equal(l.final.status, 200);
    assert.equal(l.final.json().headers.oidc_claim_iss, ISSUER2());
    const before = await opStats(ISSUER2());
    const md = (await request(`${ISSUER2()}/.well-known/openid-configuration`)).json();
    const confirm = await client.get(md.end_session_endpoint);
    assert.equal(confirm.status, 200);
    const f = confirm.text.match(/<form[^>]*action="([^"]+)"[\s\S]*?name="xsrf" value="([^"]+)"/);
    assert.ok(f, 'the second provider shows its logout confirmation form');
    const done = await client.postForm(new URL(f[1], md.end_session_endpoint).href, { xsrf: f[2], logout: 'yes' });
    assert.ok([200, 302, 303].includes(done.status));
    const after = await opStats(ISSUER2());
    assert.equal(delta(after, before, 'backchannel_success'), 1, 'the second provider delivered its logout token');
    assert.equal(delta(after, before, 'backchannel_error'), 0);
    const res = await client.get(`${GATEWAY()}/second/y`);
    assert.equal(res.status, 302);
    assert.ok(res.location.startsWith(`${ISSUER2()}/auth?`), res.location);
    assert.equal((await api(first.client, '/app/')).status, 200, 'the first provider\'s session is untouched');
  });
});

describe('client authentication: private_key_jwt with PAR and form_post, client_secret_jwt', () => {
  test('private_key_jwt: the request is pushed (PAR), the browser gets only client_id and request_uri, the response comes as form_post', async () => {
    const gw = env('E2E_PKJWT_GATEWAY');
    const client = new Client();
    const before = await opStats();
    const l = await login(client, '/app/pk?x=1', 'alice', { gateway: gw });
    const authorize = new URL(l.start.location);
    assert.deepEqual([...authorize.searchParams.keys()].sort(), ['client_id', 'request_uri'], authorize.href);
    assert.equal(authorize.searchParams.get('client_id'), 'gateway-pkjwt');
    assert.ok(authorize.searchParams.get('request_uri').startsWith('urn:ietf:params:oauth:request_uri:'));
    assert.ok(l.pages.includes('form_post'), `the provider answered with form_post: ${l.pages}`);
    assert.equal(l.final.status, 200, l.final.text.slice(0, 300));
    assert.equal(l.final.url, `${gw}/app/pk?x=1`);
    const echo = l.final.json();
    assert.equal(echo.headers.oidc_claim_sub, 'alice');
    assert.equal(delta(await opStats(), before, 'authorization_code'), 1, 'the code was exchanged, with a client assertion');
    // The refresh hook authenticates the client again.
    const refreshed = await client.get(`${gw}/oauth2/callback?refresh=${encodeURIComponent('/app/')}&access_token=${encodeURIComponent(echo.headers.oidc_access_token)}`);
    assert.equal(refreshed.status, 302);
    assert.equal(new URL(refreshed.location).searchParams.get('error_code'), null, refreshed.location);
  });

  test('client_secret_jwt: a login and a refresh', async () => {
    const gw = env('E2E_CSJWT_GATEWAY');
    const client = new Client();
    const l = await login(client, '/app/cs', 'bob', { gateway: gw });
    assert.equal(l.final.status, 200, l.final.text.slice(0, 300));
    const echo = l.final.json();
    assert.equal(echo.headers.oidc_claim_sub, 'bob');
    const refreshed = await client.get(`${gw}/oauth2/callback?refresh=${encodeURIComponent('/app/')}&access_token=${encodeURIComponent(echo.headers.oidc_access_token)}`);
    assert.equal(refreshed.status, 302);
    assert.equal(new URL(refreshed.location).searchParams.get('error_code'), null, refreshed.location);
  });
});
