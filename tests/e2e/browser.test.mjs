// Real-browser end-to-end checks: headless Chromium (Debian's, driven by playwright-core; no
// browser download) logs in through the gateway at the real oidc-provider. The provider runs
// on another loopback address (127.0.0.2) than the gateway (127.0.0.1), so it is another
// site: the return from the provider is a cross-site navigation, as in production, and the
// browser's SameSite rules apply to the gateway's cookies.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { chromium } from 'playwright-core';

import { GATEWAY, ISSUER, opStats } from './lib.mjs';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * A fresh Chromium profile (its own --user-data-dir), removed on close. `ignoreHTTPSErrors`
 * for the TLS gateway only: its certificate is self-signed.
 */
async function launch({ ignoreHTTPSErrors = false, args = [] } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'oidc-gateway-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.E2E_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...FLAGS, ...args],
    timeout: 30000,
    ignoreHTTPSErrors,
  });
  context.setDefaultTimeout(15000);
  const page = context.pages()[0] || (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Opens `path` behind the gateway (`base`: the main one unless told) and logs `user` in with
 * the provider's forms, as a person would.
 */
async function loginAs(page, path, user, base = GATEWAY()) {
  await page.goto(`${base}${path}`);
  assert.ok(page.url().startsWith(`${ISSUER()}/interaction/`), `at the provider's login page: ${page.url()}`);
  assert.equal(await page.textContent('h1'), 'Sign-in');
  await page.fill('input[name="login"]', user);
  await page.fill('input[name="password"]', 'any password');
  await page.click('button[type="submit"]');
  await page.waitForSelector('button:has-text("Continue")');
  assert.equal(await page.textContent('h1'), 'Authorize', 'the provider asks for consent');
  await Promise.all([page.waitForURL(`${base}${path}`), page.click('button:has-text("Continue")')]);
}

const cookieMap = async (context) => Object.fromEntries((await context.cookies(GATEWAY())).map((c) => [c.name, c]));

describe('headless Chromium against the gateway and oidc-provider', () => {
  let b;
  before(async () => {
    b = await launch();
  });
  after(async () => {
    await b?.close();
  });

  test('protected page -> provider login form -> consent -> back on the app with its identity headers', async () => {
    const { page, context } = b;
    await loginAs(page, '/app/welcome?from=browser', 'alice');
    assert.equal(await page.textContent('#user'), 'alice', 'the app greets the user the gateway named');
    const h = await page.evaluate(() => window.echo.headers);
    assert.equal(h.oidc_claim_sub, 'alice');
    assert.equal(h.oidc_claim_email, 'alice@example.com');
    assert.equal(h.oidc_claim_groups, 'admins,users');
    assert.ok(h.oidc_access_token);
    assert.ok(!(h.cookie || '').includes('oidc_'), 'the gateway cookies did not reach the app');
    if (process.env.E2E_ARTIFACTS) await page.screenshot({ path: join(process.env.E2E_ARTIFACTS, 'app.png') });
  });

  test('the session cookie is HttpOnly, SameSite=Lax, Path=/ (and script cannot read it)', async () => {
    const { page, context } = b;
    const cookies = await cookieMap(context);
    const s = cookies.oidc_session;
    assert.ok(s, `a session cookie: ${Object.keys(cookies).join(', ')}`);
    assert.equal(s.httpOnly, true);
    assert.equal(s.sameSite, 'Lax');
    assert.equal(s.path, '/');
    assert.equal(s.secure, false, 'plain http: not Secure');
    assert.equal(Object.keys(cookies).filter((n) => n.startsWith('oidc_state_')).length, 0, 'the state cookie was cleared');
    const visible = await page.evaluate(() => document.cookie);
    assert.ok(!visible.includes('oidc_session'), 'HttpOnly: invisible to page script');
  });

  test('the refresh hook called from page JavaScript with the access token the app saw', async () => {
    const { page } = b;
    const at = await page.evaluate(() => window.echo.headers.oidc_access_token);
    const before = await opStats();
    const hop = await page.evaluate(async (token) => {
      const r = await fetch(`/oauth2/callback?refresh=${encodeURIComponent('/app/after')}&access_token=${encodeURIComponent(token)}`, { redirect: 'manual' });
      return { type: r.type };
    }, at);
    assert.equal(hop.type, 'opaqueredirect', 'the hook answered with a redirect');
    const after = await opStats();
    assert.equal(after.refresh_token - before.refresh_token, 1, 'one refresh grant at the provider');
    const seen = await page.evaluate(async () => (await fetch('/app/after', { headers: { accept: 'application/json' } })).json());
    assert.notEqual(seen.headers.oidc_access_token, at, 'the browser stored the new session cookie; the app sees the new token');
    assert.equal(seen.headers.oidc_claim_sub, 'alice');
    const mismatch = await page.evaluate(async () => {
      const r = await fetch(`/oauth2/callback?refresh=${encodeURIComponent('/app/after')}&access_token=stale`);
      return r.url;
    });
    assert.equal(new URL(mismatch).searchParams.get('error_code'), 'no_access_token_match');
  });

  test('logout goes through the provider\'s end_session and back; the next visit needs a new login', async () => {
    const { page, context } = b;
    await page.goto(`${GATEWAY()}/oauth2/callback?logout=${encodeURIComponent('/public/logged-out')}`);
    assert.ok(page.url().startsWith(`${ISSUER()}/session/end`), `at the provider: ${page.url()}`);
    await Promise.all([page.waitForURL(`${GATEWAY()}/public/logged-out`), page.click('button[value="yes"]')]);
    const cookies = await cookieMap(context);
    assert.equal(cookies.oidc_session, undefined, 'the session cookie is gone');
    const h = await page.evaluate(() => window.echo.headers);
    assert.equal(h.oidc_claim_sub, undefined, 'anonymous on the public page');
    await page.goto(`${GATEWAY()}/app/`);
    assert.ok(page.url().startsWith(`${ISSUER()}/interaction/`));
    assert.equal(await page.textContent('h1'), 'Sign-in', 'the provider session ended too: credentials again');
  });
});

describe('headless Chromium: a form kept across the login (route.preserve_post)', () => {
  test('a form posted without a session is re-submitted after the login and reaches the app', async () => {
    const b = await launch();
    try {
      const { page } = b;
      // The app's form page, on the gateway's origin (served here, as the app would serve it).
      await page.route(`${GATEWAY()}/public/form-page`, (route) =>
        route.fulfill({
          status: 200,
          contentType: 'text/html; charset=utf-8',
          body: `<!doctype html><meta charset="utf-8"><form method="post" action="/forms/save?draft=1">
<input name="title"><textarea name="text"></textarea>
<input type="hidden" name="tag" value="a"><input type="hidden" name="tag" value="b">
<input type="hidden" name="submit" value="shadowing form.submit">
<button type="submit">Save</button></form>`,
        }),
      );
      await page.goto(`${GATEWAY()}/public/form-page`);
      await page.fill('input[name="title"]', '<b>Hello</b> & "quotes" </script>');
      await page.fill('textarea[name="text"]', 'line 1\nline 2 – ünïcödé');
      // No session: the form goes to the gateway, which keeps it and sends the browser to log in.
      await Promise.all([page.waitForURL(`${ISSUER()}/interaction/**`), page.click('button:has-text("Save")')]);
      assert.equal(await page.textContent('h1'), 'Sign-in');
      await page.fill('input[name="login"]', 'pat');
      await page.fill('input[name="password"]', 'any password');
      await page.click('button[type="submit"]');
      await page.waitForSelector('button:has-text("Continue")');
      // The callback answers the re-submitting page; its nonce-allowed script posts the form.
      const [callback] = await Promise.all([
        page.waitForResponse((r) => r.url().startsWith(`${GATEWAY()}/oauth2/callback?`)),
        page.waitForURL(`${GATEWAY()}/forms/save?draft=1`),
        page.click('button:has-text("Continue")'),
      ]);
      assert.equal(callback.status(), 200);
      const headers = await callback.allHeaders();
      assert.match(headers['content-security-policy'], /script-src 'nonce-[A-Za-z0-9_-]{22,}'/);
      assert.equal(headers['referrer-policy'], 'strict-origin');
      assert.equal(headers['cache-control'], 'no-store');
      const echo = await page.evaluate(() => window.echo);
      assert.equal(echo.method, 'POST');
      assert.equal(echo.path, '/forms/save');
      assert.equal(echo.query, 'draft=1');
      assert.equal(echo.headers.oidc_claim_sub, 'pat', 'the form arrives as the logged-in user');
      assert.equal(echo.headers.origin, GATEWAY(), 'a same-origin POST (not Origin: null)');
      const form = new URLSearchParams(echo.body);
      assert.equal(form.get('title'), '<b>Hello</b> & "quotes" </script>');
      assert.equal(form.get('text'), 'line 1\r\nline 2 – ünïcödé');
      assert.deepEqual(form.getAll('tag'), ['a', 'b']);
      assert.equal(form.get('submit'), 'shadowing form.submit');
      assert.deepEqual([...form.keys()], ['title', 'text', 'tag', 'tag', 'submit'], 'the original order');
    } finally {
      await b.close();
    }
  });
});

describe('headless Chromium: large claims', () => {
  test('a large session is stored in chunk cookies, all HttpOnly and SameSite=Lax, and works', async () => {
    const b = await launch();
    try {
      await loginAs(b.page, '/app/big', 'big-browser');
      const cookies = await cookieMap(b.context);
      const chunks = Object.values(cookies).filter((c) => /^oidc_session_\d+$/.test(c.name));
      assert.ok(chunks.length >= 2, `chunk cookies: ${Object.keys(cookies).join(', ')}`);
      assert.equal(cookies.oidc_session_chunks?.value, String(chunks.length));
      assert.equal(cookies.oidc_session, undefined, 'no unchunked cookie beside the chunks');
      for (const c of [...chunks, cookies.oidc_session_chunks]) {
        assert.equal(c.httpOnly, true, c.name);
        assert.equal(c.sameSite, 'Lax', c.name);
      }
      const h = await b.page.evaluate(() => window.echo.headers);
      assert.equal(h.oidc_claim_sub, 'big-browser');
      assert.ok(h.oidc_claim_bio.length >= 6000);
      // The browser sends every chunk back: a second page load works without a new login.
      await b.page.goto(`${GATEWAY()}/app/again`);
      assert.equal(b.page.url(), `${GATEWAY()}/app/again`);
      assert.equal(await b.page.textContent('#user'), 'big-browser');
    } finally {
      await b.close();
    }
  });
});

describe('headless Chromium: the gateway serving TLS', () => {
  // scripts/e2e starts a second gateway (client `gateway` too) with tls_cert_file,
  // tls_key_file (a self-signed certificate for 127.0.0.1) and hsts = "1d".
  const TLS_GATEWAY = process.env.E2E_TLS_GATEWAY;

  test('login over https: the app behind it, Secure session cookie, HSTS, HTTP/2', { skip: !TLS_GATEWAY && 'no TLS gateway (openssl missing)' }, async () => {
    const b = await launch({ ignoreHTTPSErrors: true });
    try {
      const { page, context } = b;
      await loginAs(page, '/hello', 'tina', TLS_GATEWAY);
      assert.ok(page.url().startsWith('https://'), `back on the app over https: ${page.url()}`);
      // The session is in place: the app page again, without the provider.
      const res = await page.goto(`${TLS_GATEWAY}/hello`);
      assert.equal(page.url(), `${TLS_GATEWAY}/hello`);
      assert.equal(res.status(), 200);
      const echo = await page.evaluate(() => window.echo);
      assert.equal(echo.path, '/hello', 'the echo upstream answered for /hello');
      assert.equal(echo.headers.oidc_claim_sub, 'tina');
      assert.equal(echo.headers.oidc_claim_email, 'tina@example.com');
      assert.equal(await page.textContent('#user'), 'tina');
      assert.ok(!(echo.headers.cookie || '').includes('oidc_'), 'the gateway cookies did not reach the app');
      assert.equal((await res.allHeaders())['strict-transport-security'], 'max-age=86400');
      const tls = await res.securityDetails();
      assert.equal(tls?.subjectName, '127.0.0.1', 'the self-signed certificate');
      assert.match(tls?.protocol || '', /^TLS 1\.[23]$/);
      assert.equal(
        await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol),
        'h2',
        'ALPN chose HTTP/2',
      );
      const cookies = Object.fromEntries((await context.cookies(TLS_GATEWAY)).map((c) => [c.name, c]));
      const s = cookies.oidc_session;
      assert.ok(s, `a session cookie: ${Object.keys(cookies).join(', ')}`);
      assert.equal(s.secure, true, 'TLS: Secure');
      assert.equal(s.httpOnly, true);
      assert.equal(s.sameSite, 'Lax');
      assert.equal(s.path, '/');
      assert.equal(Object.keys(cookies).filter((n) => n.startsWith('oidc_state_')).length, 0, 'the state cookie was cleared');
    } finally {
      await b.close();
    }
  });
});

describe('headless Chromium: a host-based route', () => {
  test('a virtual host has its own route, upstream, login and host-only cookie', async () => {
    const port = new URL(GATEWAY()).port;
    const vhost = `http://vhost.e2e.test:${port}`;
    const b = await launch({ args: ['--host-resolver-rules=MAP vhost.e2e.test 127.0.0.1'] });
    try {
      await loginAs(b.page, '/page?v=1', 'alice', vhost);
      // Not a potentially trustworthy origin (plain http, not loopback): Chromium sends no
      // Sec-Fetch-Dest, so the echo app answers its JSON.
      const echo = JSON.parse(await b.page.textContent('pre'));
      assert.equal(echo.path, '/vhost/page', "the host's route took it (its upstream's base path)");
      assert.equal(echo.headers.oidc_claim_sub, 'alice');
      const session = (await b.context.cookies(vhost)).find((c) => c.name === 'oidc_session');
      assert.equal(session?.domain, 'vhost.e2e.test', 'a host-only cookie for the virtual host');
      // The gateway's own address has no such route: /page there is the host-less "/".
      await b.page.goto(`${GATEWAY()}/page`);
      assert.ok(b.page.url().startsWith(`${ISSUER()}/interaction/`), 'another host: its own login');
    } finally {
      await b.close();
    }
  });
});
