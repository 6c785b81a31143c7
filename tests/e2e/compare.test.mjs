// The differential test: Apache + mod_auth_openidc (Debian's) and the gateway run one site
// configuration (tests/compare/site.conf; the gateway's is made of it) in front of the
// same echo app and oidc-provider. The same user logs in through both, and what the app
// receives and what the hooks answer are compared. Any difference fails, unless it is one
// of DELIBERATE, the table README "Coming from mod_auth_openidc" documents.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Client, env, login, request } from './lib.mjs';

const APACHE = () => env('E2E_APACHE');
const GATEWAY = () => env('E2E_COMPARE_GATEWAY');

/**
 * Differences on purpose, by check: each is a row of README "Coming from
 * mod_auth_openidc" (deliberate differences). A difference not listed fails the test.
 */
const DELIBERATE = {
  // Header names only one side sends, or values that differ: [name, why].
  headers: [],
  // Hook or route answers that differ: [check, why].
  answers: [
    ['claim rule', 'a logged-in user a claim rule refuses gets 403 from the gateway; mod_auth_openidc 2.4.12 answers 401'],
    ['logout id_token_hint', 'the gateway keeps the ID token in every session store, so logout sends id_token_hint; mod_auth_openidc does not with OIDCSessionType client-cookie'],
    ['remove_at_cache cached', 'the gateway answers remove_at_cache on its redirect URI whatever the routes; mod_auth_openidc 2.4.12 only where the redirect URI is in an oauth20 location, and here it is the login callback: 404'],
  ],
};

/** Per-login values that differ between any two logins (tokens, times, ids). */
const PER_LOGIN = new Set([
  'oidc_access_token',
  'oidc_access_token_expires',
  'oidc_refresh_token',
  'oidc_id_token',
  'oidc_id_token_payload',
  'oidc_claim_iat',
  'oidc_claim_exp',
  'oidc_claim_auth_time',
  'oidc_claim_nonce',
  'oidc_claim_sid',
  'oidc_claim_at_hash',
  'oidc_claim_jti',
  'oidc_claim_c_hash',
  'oidc_claim_s_hash',
]);

const identity = (headers) =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => name.startsWith('oidc_')));

async function loggedIn(origin, user, path) {
  const client = new Client();
  const l = await login(client, path, user, { gateway: origin });
  assert.equal(l.final.status, 200, `${origin}: login of ${user} ends on the app: ${l.final.status} ${l.final.text.slice(0, 300)}`);
  return { client, echo: l.final.json() };
}

/** The same request through both; returns [apache, gateway] responses. */
async function both(path, { apacheClient, gatewayClient, headers = {} } = {}) {
  const send = (client, origin) =>
    client ? client.send(`${origin}${path}`, { headers }) : request(`${origin}${path}`, { headers });
  return Promise.all([send(apacheClient, APACHE()), send(gatewayClient, GATEWAY())]);
}

/** Equal header values; JSON objects and arrays (object claims) by their JSON value:
 * mod_auth_openidc writes jansson's `{"a": [1, 2]}`, the gateway the compact `{"a":[1,2]}`. */
function sameValue(a, b) {
  if (a === b) return true;
  try {
    const [x, y] = [JSON.parse(a), JSON.parse(b)];
    return typeof x === 'object' && x !== null && JSON.stringify(x) === JSON.stringify(y);
  } catch {
    return false;
  }
}

function allowed(kind, key) {
  return DELIBERATE[kind].some((row) => row[0] === key);
}

describe('differential: Apache + mod_auth_openidc and the gateway, one site configuration', () => {
  let apache;
  let gateway;

  test('the same user logs in through both; the app receives the same identity headers', async () => {
    apache = await loggedIn(APACHE(), 'alice', '/app/page?x=1');
    gateway = await loggedIn(GATEWAY(), 'alice', '/app/page?x=1');
    const a = identity(apache.echo.headers);
    const g = identity(gateway.echo.headers);
    const differences = [];
    for (const name of new Set([...Object.keys(a), ...Object.keys(g)])) {
      if (!(name in a) || !(name in g)) {
        if (!allowed('headers', name)) differences.push(`${name}: only ${name in a ? 'Apache' : 'the gateway'} sends it (${a[name] ?? g[name]})`);
        continue;
      }
      if (!PER_LOGIN.has(name) && !sameValue(a[name], g[name]) && !allowed('headers', name)) {
        differences.push(`${name}: Apache ${JSON.stringify(a[name])}, gateway ${JSON.stringify(g[name])}`);
      }
    }
    assert.deepEqual(differences, [], `identity headers differ:\n${differences.join('\n')}`);
    assert.equal(g.oidc_claim_sub, 'alice');
    assert.equal(apache.echo.path, gateway.echo.path);
    assert.equal(apache.echo.query, gateway.echo.query);
  });

  test('answers without a session: browser, XHR, unauth_action pass and 401', async () => {
    const cases = [
      ['/app/x', { accept: 'text/html' }],
      ['/app/x', { accept: 'application/json', 'x-requested-with': 'XMLHttpRequest' }],
      ['/public/x', { accept: 'text/html' }],
      ['/strict/x', { accept: 'text/html' }],
    ];
    const differences = [];
    for (const [path, headers] of cases) {
      const [a, g] = await both(path, { headers });
      const key = `${path} ${headers['x-requested-with'] ? 'XHR' : 'browser'}`;
      if (a.status !== g.status && !allowed('answers', key)) differences.push(`${key}: Apache ${a.status}, gateway ${g.status}`);
    }
    assert.deepEqual(differences, [], differences.join('\n'));
  });

  test('claim rules: a user outside the group is refused by both', async () => {
    const a = await loggedIn(APACHE(), 'mallory', '/app/');
    const g = await loggedIn(GATEWAY(), 'mallory', '/app/');
    const [ra, rg] = await both('/admins/x', { apacheClient: a.client, gatewayClient: g.client });
    assert.ok(allowed('answers', 'claim rule') || ra.status === rg.status, `Apache ${ra.status}, gateway ${rg.status}`);
  });

  test('the refresh hook: the same error_code for each failure, and a refresh for the right token', async () => {
    const code = (res) => (res.location ? new URL(res.location).searchParams.get('error_code') : `status ${res.status}`);
    const cases = [
      ['wrong access token', `/oauth2/callback?refresh=${encodeURIComponent('/app/')}&access_token=wrong`, true],
      ['no access token', `/oauth2/callback?refresh=${encodeURIComponent('/app/')}`, true],
      ['no session', `/oauth2/callback?refresh=${encodeURIComponent('/app/')}&access_token=x`, false],
    ];
    const differences = [];
    for (const [name, path, withSession] of cases) {
      const [a, g] = await both(path, withSession ? { apacheClient: apache.client, gatewayClient: gateway.client } : {});
      if ((a.status !== g.status || code(a) !== code(g)) && !allowed('answers', `refresh: ${name}`)) {
        differences.push(`refresh, ${name}: Apache ${a.status} ${code(a)}, gateway ${g.status} ${code(g)}`);
      }
    }
    const at = (side) => side.echo.headers.oidc_access_token;
    const ok = await Promise.all([
      apache.client.send(`${APACHE()}/oauth2/callback?refresh=${encodeURIComponent('/app/after')}&access_token=${encodeURIComponent(at(apache))}`),
      gateway.client.send(`${GATEWAY()}/oauth2/callback?refresh=${encodeURIComponent('/app/after')}&access_token=${encodeURIComponent(at(gateway))}`),
    ]);
    for (const [i, res] of ok.entries()) {
      const side = i ? 'gateway' : 'Apache';
      if (res.status !== 302 || code(res) !== null) differences.push(`refresh, right token: ${side} ${res.status} ${code(res)}`);
    }
    assert.deepEqual(differences, [], differences.join('\n'));
  });

  test('logout: both end the session at the provider with the same post-logout target', async () => {
    const target = (origin) => `${origin}/public/logged-out`;
    const [a, g] = await Promise.all([
      apache.client.send(`${APACHE()}/oauth2/callback?logout=${encodeURIComponent(target(APACHE()))}`),
      gateway.client.send(`${GATEWAY()}/oauth2/callback?logout=${encodeURIComponent(target(GATEWAY()))}`),
    ]);
    assert.equal(a.status, g.status, `Apache ${a.status}, gateway ${g.status}`);
    const ua = new URL(a.location);
    const ug = new URL(g.location);
    assert.equal(`${ua.origin}${ua.pathname}`, `${ug.origin}${ug.pathname}`, 'both go to end_session');
    assert.equal(ua.searchParams.get('post_logout_redirect_uri'), target(APACHE()));
    assert.equal(ug.searchParams.get('post_logout_redirect_uri'), target(GATEWAY()));
    const hints = [Boolean(ua.searchParams.get('id_token_hint')), Boolean(ug.searchParams.get('id_token_hint'))];
    assert.ok(hints[0] === hints[1] || allowed('answers', 'logout id_token_hint'), `id_token_hint: Apache ${hints[0]}, gateway ${hints[1]}`);
  });

  test('bearer routes: the same answers, and the same identity for a valid token', async () => {
    const token = apache.echo.headers.oidc_access_token;
    const cases = [
      ['valid token', { authorization: `Bearer ${token}` }],
      ['no token', {}],
      ['unknown token', { authorization: 'Bearer not-a-token-the-provider-issued' }],
      ['wrong scheme', { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }],
    ];
    const differences = [];
    for (const [name, headers] of cases) {
      const [a, g] = await both('/api/items', { headers: { accept: 'application/json', ...headers } });
      if (a.status !== g.status && !allowed('answers', `bearer: ${name}`)) differences.push(`bearer, ${name}: Apache ${a.status}, gateway ${g.status}`);
      if (name === 'valid token' && a.status === 200 && g.status === 200) {
        const ia = identity(a.json().headers);
        const ig = identity(g.json().headers);
        for (const h of new Set([...Object.keys(ia), ...Object.keys(ig)])) {
          if (!sameValue(ia[h], ig[h]) && !allowed('headers', `bearer ${h}`)) {
            differences.push(`bearer identity ${h}: Apache ${JSON.stringify(ia[h])}, gateway ${JSON.stringify(ig[h])}`);
          }
        }
      }
      const challenge = [a.headers['www-authenticate'], g.headers['www-authenticate']];
      if (Boolean(challenge[0]) !== Boolean(challenge[1]) && !allowed('answers', `bearer challenge: ${name}`)) {
        differences.push(`bearer, ${name}: WWW-Authenticate Apache ${challenge[0]}, gateway ${challenge[1]}`);
      }
    }
    // remove_at_cache: the token is cached on both now; then it is not.
    for (const round of ['cached', 'removed']) {
      const [a, g] = await both(`/oauth2/callback?remove_at_cache=${encodeURIComponent(token)}`);
      if (a.status !== g.status && !allowed('answers', `remove_at_cache ${round}`)) differences.push(`remove_at_cache (${round}): Apache ${a.status}, gateway ${g.status}`);
    }
    assert.deepEqual(differences, [], differences.join('\n'));
  });

  test('the info hook: the same members', async () => {
    const a = await loggedIn(APACHE(), 'bob', '/app/');
    const g = await loggedIn(GATEWAY(), 'bob', '/app/');
    const [ra, rg] = await both('/oauth2/callback?info=json', { apacheClient: a.client, gatewayClient: g.client });
    assert.equal(ra.status, rg.status, `Apache ${ra.status}, gateway ${rg.status}`);
    const [ja, jg] = [ra.json(), rg.json()];
    const keys = (o) => Object.keys(o).sort();
    const differences = [];
    if (JSON.stringify(keys(ja)) !== JSON.stringify(keys(jg)) && !allowed('answers', 'info members')) {
      differences.push(`info members: Apache ${keys(ja)}, gateway ${keys(jg)}`);
    }
    for (const k of ['userinfo', 'id_token']) {
      if (ja[k] && jg[k] && JSON.stringify(keys(ja[k])) !== JSON.stringify(keys(jg[k])) && !allowed('answers', `info ${k}`)) {
        differences.push(`info ${k}: Apache ${keys(ja[k])}, gateway ${keys(jg[k])}`);
      }
    }
    assert.deepEqual(differences, [], differences.join('\n'));
  });
});
