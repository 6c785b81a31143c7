// Forward-auth end-to-end checks: the real nginx (auth_request) and the real Caddy
// (forward_auth), each run by scripts/e2e with the shipped conf/forward-auth/ files (ports
// rewritten), in front of the echo app, asking a gateway started with
// conf/forward-auth/gateway.toml (provider and ports rewritten) at the real oidc-provider.
// Login through the front proxy (HTTP client and headless Chromium), identity headers at
// the app, forged headers dropped, XHR 401, claim rules, the refresh hook, logout.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { Client, ISSUER, env, introspectAtOp, login, request } from './lib.mjs';

const FRONTS = [
  ['nginx', () => env('E2E_FA_NGINX')],
  ['Caddy', () => env('E2E_FA_CADDY')],
];

for (const [name, origin] of FRONTS) {
  describe(`forward-auth behind ${name}`, () => {
    /** Logs `user` in through the front proxy, starting at `path`; returns the client and
     * the app's echo of the last request. */
    async function loggedIn(user, path = '/app/page?x=1') {
      const client = new Client();
      const l = await login(client, path, user, { gateway: origin() });
      assert.ok(l.start.location.startsWith(`${ISSUER()}/auth`), `sent to the provider: ${l.start.location}`);
      assert.ok(l.callback, 'the callback went through the front proxy to the gateway');
      assert.equal(l.final.status, 200, `back on the app: ${l.final.status} ${l.final.text.slice(0, 300)}`);
      assert.equal(l.final.url, `${origin()}${path}`, 'back to the original URL');
      return { client, echo: l.final.json() };
    }

    test('login through the front proxy; the app sees the identity and never a forged one', async () => {
      const { client, echo } = await loggedIn('alice');
      assert.equal(echo.path, '/app/page');
      assert.equal(echo.headers.oidc_claim_sub, 'alice');
      assert.equal(echo.headers.oidc_claim_email, 'alice@example.com');
      assert.equal(echo.headers['x-remote-user'], 'alice');
      assert.ok(echo.headers.oidc_access_token, 'the access token');
      const forged = await client.get(`${origin()}/app/other`, {
        'oidc_claim_sub': 'mallory',
        'oidc-claim-sub': 'mallory',
        'x-remote-user': 'mallory',
      });
      assert.equal(forged.status, 200);
      const seen = forged.json().headers;
      assert.equal(seen.oidc_claim_sub, 'alice');
      assert.equal(seen['x-remote-user'], 'alice');
      assert.equal(seen['oidc-claim-sub'], undefined);
    });

    test('no session: a browser is sent to log in, an XHR gets 401, a public path passes', async () => {
      const anon = await request(`${origin()}/app/x`, { headers: { accept: 'text/html' } });
      assert.equal(anon.status, 302);
      assert.ok(anon.location.startsWith(`${ISSUER()}/auth`), anon.location);
      const xhr = await request(`${origin()}/app/x`, {
        headers: { accept: 'application/json', 'x-requested-with': 'XMLHttpRequest' },
      });
      assert.equal(xhr.status, 401);
      const open = await request(`${origin()}/public/x`, { headers: { oidc_claim_sub: 'mallory', 'x-remote-user': 'mallory' } });
      assert.equal(open.status, 200);
      assert.equal(open.json().headers.oidc_claim_sub, undefined);
      assert.equal(open.json().headers['x-remote-user'], undefined);
    });

    test('a claim rule refuses with 403 through the front proxy', async () => {
      const { client } = await loggedIn('mallory');
      const res = await client.get(`${origin()}/admin/x`);
      assert.equal(res.status, 403);
      const ok = await loggedIn('bob', '/admin/y');
      assert.equal(ok.echo.headers.oidc_claim_sub, 'bob');
    });

    test('the refresh hook renews the access token the app then receives', async () => {
      const { client, echo } = await loggedIn('carol');
      const before = echo.headers.oidc_access_token;
      const res = await client.get(
        `${origin()}/oauth2/callback?refresh=${encodeURIComponent('/app/after')}&access_token=${encodeURIComponent(before)}`,
      );
      assert.equal(res.status, 302, res.text.slice(0, 200));
      assert.equal(new URL(res.location, origin()).href, `${origin()}/app/after`);
      const after = (await client.get(`${origin()}/app/after`)).json().headers.oidc_access_token;
      assert.ok(after && after !== before, 'a new access token');
      assert.equal((await introspectAtOp(after)).active, true);
    });

    test('logout through the front proxy ends the session', async () => {
      const { client } = await loggedIn('dave');
      const res = await client.get(`${origin()}/oauth2/callback?logout=${encodeURIComponent('/public/logged-out')}`);
      assert.equal(res.status, 302);
      assert.equal(new URL(res.location).searchParams.get('post_logout_redirect_uri'), `${origin()}/public/logged-out`);
      const confirm = await client.get(res.location);
      const f = confirm.text.match(/<form[^>]*action="([^"]+)"[\s\S]*?name="xsrf" value="([^"]+)"/);
      assert.ok(f, 'the provider shows its logout confirmation form');
      const done = await client.postForm(new URL(f[1], res.location).href, { xsrf: f[2], logout: 'yes' });
      const last = (await client.follow(done)).at(-1);
      assert.equal(last.url, `${origin()}/public/logged-out`);
      assert.equal(last.status, 200);
      const again = await client.get(`${origin()}/app/x`);
      assert.equal(again.status, 302, 'logged out: sent to log in again');
    });

    test('headless Chromium logs in through the front proxy', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'oidc-gateway-e2e-fa-'));
      const context = await chromium.launchPersistentContext(dir, {
        executablePath: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'],
        timeout: 30000,
      });
      try {
        context.setDefaultTimeout(15000);
        const page = context.pages()[0] || (await context.newPage());
        await page.goto(`${origin()}/app/browser`);
        assert.ok(page.url().startsWith(`${ISSUER()}/interaction/`), page.url());
        await page.fill('input[name="login"]', 'erin');
        await page.fill('input[name="password"]', 'any password');
        await page.click('button[type="submit"]');
        await page.waitForSelector('button:has-text("Continue")');
        await Promise.all([page.waitForURL(`${origin()}/app/browser`), page.click('button:has-text("Continue")')]);
        assert.equal(await page.textContent('#user'), 'erin');
        const echo = await page.evaluate(() => window.echo);
        assert.equal(echo.headers.oidc_claim_email, 'erin@example.com');
        // An XHR from the page, with the session cookie: the identity, no login redirect.
        const seen = await page.evaluate(async () => {
          const r = await fetch('/app/xhr', { headers: { 'x-requested-with': 'XMLHttpRequest' } });
          return { status: r.status, body: await r.json() };
        });
        assert.equal(seen.status, 200);
        assert.equal(seen.body.headers.oidc_claim_sub, 'erin');
      } finally {
        await context.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
}
