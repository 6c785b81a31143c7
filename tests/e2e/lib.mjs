// Shared helpers of the end-to-end suite: where the parts run (from the environment that
// scripts/e2e sets), a cookie-keeping HTTP client that never follows redirects on its own
// (node:http, so no fetch-spec headers such as `Sec-Fetch-Mode: cors` are added behind our
// back), and a login that drives oidc-provider's devInteractions forms.
import http from 'node:http';

export function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the suite through scripts/e2e`);
  return v;
}

export const GATEWAY = () => env('E2E_GATEWAY'); // http://127.0.0.1:PORT
export const ISSUER = () => env('E2E_ISSUER'); // http://127.0.0.2:PORT
// The second provider of the main gateway ([[provider]] name = "second").
export const ISSUER2 = () => env('E2E_ISSUER2'); // http://127.0.0.3:PORT
export const ADMIN = () => env('E2E_ADMIN'); // http://127.0.0.1:PORT
export const CLIENT_SECRET = () => env('E2E_CLIENT_SECRET');

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** One HTTP request; the body is read whole. `headers` is a plain object or [name, value] pairs. */
export function request(url, { method = 'GET', headers = {}, body } = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: u.hostname,
        port: u.port,
        path: `${u.pathname}${u.search}`,
        method,
        headers: Array.isArray(headers) ? headers.flat() : headers,
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const setCookies = res.headers['set-cookie'] || [];
          resolve({
            url,
            status: res.statusCode,
            headers: res.headers,
            location: res.headers.location ? new URL(res.headers.location, url).href : undefined,
            setCookies,
            text,
            json() {
              return JSON.parse(text);
            },
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(30000, () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Parses one Set-Cookie value into { name, value, attrs: {lowercase name: value|true} }. */
export function parseSetCookie(sc) {
  const [pair, ...rest] = sc.split(';');
  const eq = pair.indexOf('=');
  const attrs = {};
  for (const a of rest) {
    const i = a.indexOf('=');
    const k = (i < 0 ? a : a.slice(0, i)).trim().toLowerCase();
    attrs[k] = i < 0 ? true : a.slice(i + 1).trim();
  }
  return { name: pair.slice(0, eq).trim(), value: pair.slice(eq + 1).trim(), attrs };
}

/** A cookie jar: cookies by host name (ports share cookies, as in browsers) and path. */
export class Jar {
  constructor() {
    this.cookies = new Map(); // `${host}\n${path}\n${name}` -> { host, path, name, value }
  }

  store(url, setCookies) {
    const { hostname } = new URL(url);
    for (const sc of setCookies) {
      const c = parseSetCookie(sc);
      const path = typeof c.attrs.path === 'string' ? c.attrs.path : '/';
      const key = `${hostname}\n${path}\n${c.name}`;
      const maxAge = c.attrs['max-age'] !== undefined ? Number(c.attrs['max-age']) : undefined;
      const expired = (maxAge !== undefined && maxAge <= 0)
        || (typeof c.attrs.expires === 'string' && Date.parse(c.attrs.expires) < Date.now());
      if (expired) this.cookies.delete(key);
      else this.cookies.set(key, { host: hostname, path, name: c.name, value: c.value });
    }
  }

  /** The Cookie header for `url`, or undefined. */
  header(url) {
    const { hostname, pathname } = new URL(url);
    const pairs = [...this.cookies.values()]
      .filter((c) => c.host === hostname && (pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`)))
      .map((c) => `${c.name}=${c.value}`);
    return pairs.length ? pairs.join('; ') : undefined;
  }

  /** name -> value of the cookies held for `url`'s host. */
  forHost(url) {
    const { hostname } = new URL(url);
    return Object.fromEntries([...this.cookies.values()].filter((c) => c.host === hostname).map((c) => [c.name, c.value]));
  }

  set(url, name, value, path = '/') {
    const { hostname } = new URL(url);
    this.cookies.set(`${hostname}\n${path}\n${name}`, { host: hostname, path, name, value });
  }

  delete(url, name, path = '/') {
    const { hostname } = new URL(url);
    this.cookies.delete(`${hostname}\n${path}\n${name}`);
  }

  clone() {
    const j = new Jar();
    for (const [k, v] of this.cookies) j.cookies.set(k, { ...v });
    return j;
  }
}

const NAVIGATE = {
  accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'sec-fetch-mode': 'navigate',
  'user-agent': 'oidc-gateway-e2e',
};

/** A browser-like client: keeps cookies, sends navigation headers, follows nothing by itself. */
export class Client {
  constructor(jar = new Jar()) {
    this.jar = jar;
  }

  async get(url, headers = {}) {
    return this.send(url, { headers: { ...NAVIGATE, ...headers } });
  }

  async send(url, { method = 'GET', headers = {}, body } = {}) {
    const cookie = this.jar.header(url);
    const h = { ...headers };
    if (cookie && h.cookie === undefined) h.cookie = cookie;
    if (h.cookie === null) delete h.cookie;
    const res = await request(url, { method, headers: h, body });
    this.jar.store(url, res.setCookies);
    return res;
  }

  async postForm(url, fields) {
    return this.send(url, {
      method: 'POST',
      headers: { ...NAVIGATE, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }

  /** Follows redirects from `res` (GET after 301/302/303) until a non-redirect; returns every hop. */
  async follow(res, max = 15) {
    const hops = [res];
    let cur = res;
    while ([301, 302, 303, 307, 308].includes(cur.status) && hops.length <= max) {
      cur = await this.get(cur.location);
      hops.push(cur);
    }
    return hops;
  }
}

/** The `action` and hidden fields of the first form in an oidc-provider page. */
export function form(html, base) {
  const m = html.match(/<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i);
  if (!m) return undefined;
  const fields = {};
  for (const input of m[2].matchAll(/<input[^>]*>/gi)) {
    const name = input[0].match(/name="([^"]*)"/);
    const value = input[0].match(/value="([^"]*)"/);
    if (name && /type="hidden"/i.test(input[0])) fields[name[1]] = value ? value[1] : '';
  }
  const action = m[1].replace(/&amp;/g, '&');
  return { action: new URL(action, base).href, fields };
}

/**
 * Logs `user` in through the gateway (or the one at origin `gateway`), starting at `path`:
 * gateway -> provider (login and consent forms, answered like a person would) -> gateway
 * callback -> back to `path`.
 * Returns { start, authorize, callback, final, hops, pages } (pages: the forms seen).
 */
export async function login(client, path, user, { consent = true, gateway, issuer } = {}) {
  const gw = gateway || GATEWAY();
  const op = issuer || ISSUER();
  const start = await client.get(`${gw}${path}`);
  if (start.status !== 302) throw new Error(`login start: expected 302, got ${start.status}: ${start.text.slice(0, 200)}`);
  const authorize = start.location;
  let res = start;
  const hops = [start];
  const pages = [];
  for (let i = 0; i < 30; i += 1) {
    if ([302, 303].includes(res.status)) {
      res = await client.get(res.location);
      hops.push(res);
      continue;
    }
    if (res.status === 200 && res.url.startsWith(op)) {
      const f = form(res.text, res.url);
      if (!f) throw new Error(`provider page without a form: ${res.text.slice(0, 300)}`);
      if (f.fields.prompt === 'login') {
        pages.push('login');
        res = await client.postForm(f.action, { ...f.fields, login: user, password: 'any' });
      } else if (f.fields.prompt === 'consent') {
        pages.push('consent');
        if (!consent) {
          res = await client.get(`${f.action}/abort`);
        } else {
          res = await client.postForm(f.action, f.fields);
        }
      } else if (f.fields.code || f.fields.error) {
        // response_mode=form_post: the provider's page posts the response to the gateway.
        pages.push('form_post');
        res = await client.postForm(f.action, f.fields);
      } else {
        throw new Error(`unexpected provider form: ${JSON.stringify(f)}`);
      }
      hops.push(res);
      continue;
    }
    break;
  }
  const callback = hops.find((h) => h.url.startsWith(`${gw}/oauth2/callback?`) && new URL(h.url).searchParams.has('state'));
  return { start, authorize, callback, final: res, hops, pages };
}

/** The provider's test counters (of the provider at `issuer`, default the first). */
export async function opStats(issuer = ISSUER()) {
  const res = await request(`${issuer}/_e2e/stats`);
  return res.json();
}

/** The provider's discovery document. */
let discovery;
export async function opMetadata() {
  if (!discovery) discovery = (await request(`${ISSUER()}/.well-known/openid-configuration`)).json();
  return discovery;
}

function basic(clientId = 'gateway') {
  return `Basic ${Buffer.from(`${clientId}:${CLIENT_SECRET()}`).toString('base64')}`;
}

/** A JWT access token for the resource urn:e2e:api (client_credentials as `api-client`). */
export async function jwtAccessToken() {
  const md = await opMetadata();
  const res = await request(md.token_endpoint, {
    method: 'POST',
    headers: { authorization: basic('api-client'), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource: 'urn:e2e:api', scope: 'api:read' }).toString(),
  });
  if (res.status !== 200) throw new Error(`client_credentials: ${res.status} ${res.text}`);
  return res.json().access_token;
}

/** Calls the provider's revocation endpoint as the gateway's client. */
export async function revokeAtOp(token, hint) {
  const md = await opMetadata();
  const fields = { token };
  if (hint) fields.token_type_hint = hint;
  return request(md.revocation_endpoint, {
    method: 'POST',
    headers: { authorization: basic(), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
}

/** Calls the provider's introspection endpoint as the gateway's client. */
export async function introspectAtOp(token) {
  const md = await opMetadata();
  const res = await request(md.introspection_endpoint, {
    method: 'POST',
    headers: { authorization: basic(), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }).toString(),
  });
  return res.json();
}

/** The gateway's Prometheus counters as { name: number }. */
export async function gatewayMetrics() {
  const res = await request(`${ADMIN()}/metrics`);
  const out = {};
  for (const line of res.text.split('\n')) {
    const m = line.match(/^oidc_gateway_(\w+) (\d+)/);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}
