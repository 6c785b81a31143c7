// A real, OpenID Certified provider for the end-to-end suite: panva's `oidc-provider` on
// loopback, with one confidential client (`gateway`) for the gateway under test.
//
//   node op.mjs --host 127.0.0.2 --gateway http://127.0.0.1:8080 [--port 0] [--port-file F]
//       [--replicas http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083]
//
// Environment (all optional): E2E_CLIENT_SECRET, E2E_AT_TTL (seconds, default 300),
// E2E_SHORT_AT_TTL (seconds, default 20: accounts whose login starts with "short" get it,
// so the gateway refreshes them on every request; `tiny…` accounts get 2 s tokens).
//
// Clients: `gateway` (the gateway under test), `api-client` (client_credentials, JWT
// access tokens for the resource urn:e2e:api) and, with --replicas, `gateway-replicas` (the
// replicas sharing one Redis), all with E2E_CLIENT_SECRET.
//
// Accounts: any login is accepted (devInteractions, any password). `big…` logins carry a
// large incompressible `bio` claim (session cookie chunking); `nort…` logins get no refresh
// token; `keep…` logins keep one refresh token (no rotation); `zoe…` logins have a non-ASCII name; every login gets `<login>@example.com`,
// except `mallory…` (mallory@evil.test, and not in the admins group).
// Back-channel logout: the gateway's `?logout=backchannel` is registered; the provider
// calls it when a session with the gateway ends at the provider. For `gateway-replicas` only
// the first replica's is registered: the others learn of the logout through Redis.
//
// Test-only endpoint on the provider's port: GET /_e2e/stats (counters of token grants,
// introspections, revocations, userinfo, end_session and back-channel logout calls).
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: process.env.E2E_OP_HOST || '127.0.0.2' },
    port: { type: 'string', default: process.env.E2E_OP_PORT || '0' },
    gateway: { type: 'string', default: process.env.E2E_GATEWAY_URL || '' },
    replicas: { type: 'string', default: '' },
    // The client-authentication gateways: `gateway-pkjwt` (private_key_jwt with the public
    // key of --pkjwt-key, pushed authorization requests required, form_post) and
    // `gateway-csjwt` (client_secret_jwt).
    pkjwt: { type: 'string', default: '' },
    'pkjwt-key': { type: 'string', default: '' },
    csjwt: { type: 'string', default: '' },
    'port-file': { type: 'string', default: '' },
  },
});

if (!args.gateway) {
  console.error('op.mjs: --gateway http://HOST:PORT (the gateway origin) is required');
  process.exit(2);
}
const origins = (list) => list.split(',').filter(Boolean).map((g) => g.replace(/\/$/, ''));
const gateways = origins(args.gateway);
const replicas = origins(args.replicas);
const clientSecret = process.env.E2E_CLIENT_SECRET || 'e2e-client-secret-0123456789';
const atTtl = Number(process.env.E2E_AT_TTL || 300);
const shortAtTtl = Number(process.env.E2E_SHORT_AT_TTL || 20);

// Big claims must stay big after the gateway deflates the session: random, not repetitive.
const BIG_BIO = crypto.randomBytes(4800).toString('base64');

function account(id) {
  const email = id.startsWith('mallory') ? `${id}@evil.test` : `${id}@example.com`;
  const claims = {
    sub: id,
    name: `${id[0].toUpperCase()}${id.slice(1)} Example`,
    given_name: id,
    family_name: 'Example',
    preferred_username: id,
    email,
    email_verified: true,
    groups: id.startsWith('mallory') ? ['users'] : ['admins', 'users'],
    // Keycloak-style nested roles, for [[headers.set]] and require_claims paths.
    realm_access: { roles: id.startsWith('mallory') ? ['user'] : ['admin', 'user'] },
  };
  if (id.startsWith('big')) claims.bio = BIG_BIO;
  if (id.startsWith('zoe')) claims.name = 'Zoë Ünïcødé 名前';
  return {
    accountId: id,
    async claims() {
      return claims;
    },
  };
}

const stats = {
  authorization_code: 0,
  refresh_token: 0,
  refresh_token_error: 0,
  introspection: 0,
  revocation: 0,
  userinfo: 0,
  end_session: 0,
  grants_revoked: 0,
  backchannel_success: 0,
  backchannel_error: 0,
};

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(args.port), args.host, resolve);
});
const { port } = server.address();
const issuer = `http://${args.host}:${port}`;

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'e2e-rs256', use: 'sig', alg: 'RS256' };

// A resource server whose access tokens are JWTs (the gateway's `oauth.jwt = true` path):
// `api-client` gets them with a client_credentials grant and resource=API_RESOURCE.
const API_RESOURCE = 'urn:e2e:api';

// client_secret_jwt (HS256) wants a secret of at least 32 bytes.
const jwtSecret = `${clientSecret}-client-secret-jwt-0123456789`;
const modeClients = [];
if (args.pkjwt) {
  const pem = fs.readFileSync(args['pkjwt-key'], 'utf8');
  const publicJwk = { ...crypto.createPublicKey(pem).export({ format: 'jwk' }), kid: 'e2e-gateway-key', use: 'sig', alg: 'RS256' };
  modeClients.push({
    client_id: 'gateway-pkjwt',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: { keys: [publicJwk] },
    require_pushed_authorization_requests: true,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [`${args.pkjwt}/oauth2/callback`],
  });
}
if (args.csjwt) {
  modeClients.push({
    client_id: 'gateway-csjwt',
    client_secret: jwtSecret,
    token_endpoint_auth_method: 'client_secret_jwt',
    token_endpoint_auth_signing_alg: 'HS256',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [`${args.csjwt}/oauth2/callback`],
  });
}

const provider = new Provider(issuer, {
  clients: [
    ...modeClients,
    {
      client_id: 'api-client',
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'gateway',
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: gateways.map((g) => `${g}/oauth2/callback`),
      post_logout_redirect_uris: gateways.flatMap((g) => [`${g}/`, `${g}/public/`, `${g}/public/logged-out`]),
      backchannel_logout_uri: `${gateways[0]}/oauth2/callback?logout=backchannel`,
      backchannel_logout_session_required: true,
    },
    // A client of its own, so that the provider delivers back-channel logouts of sessions
    // begun at any replica to the first one (a provider registers one URI per client).
    ...(replicas.length ? [{
      client_id: 'gateway-replicas',
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: replicas.map((r) => `${r}/oauth2/callback`),
      post_logout_redirect_uris: replicas.flatMap((r) => [`${r}/`, `${r}/public/logged-out`]),
      backchannel_logout_uri: `${replicas[0]}/oauth2/callback?logout=backchannel`,
      backchannel_logout_session_required: true,
    }] : []),
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'bio'],
    email: ['email', 'email_verified'],
    groups: ['groups', 'realm_access'],
  },
  findAccount: (_ctx, id) => account(id),
  features: {
    devInteractions: { enabled: true },
    introspection: { enabled: true },
    pushedAuthorizationRequests: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No resource parameter (the gateway's logins): opaque tokens for userinfo, as before.
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: () => false,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== API_RESOURCE) throw new errors.InvalidTarget();
        return {
          scope: 'api:read',
          audience: API_RESOURCE,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // oidc-provider refuses outgoing calls (back-channel logout) to special-use addresses such
  // as loopback (SSRF protection); here every part runs on loopback on purpose.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  // As oidc-provider's default (refresh tokens only with offline_access, which it keeps only
  // with prompt=consent), except that `nort…` accounts never get one.
  issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token')
    && code.scopes.has('offline_access')
    && !String(code.accountId).startsWith('nort'),
  // Every refresh grant consumes the refresh token and issues a new one; presenting a
  // consumed one revokes the whole grant (oidc-provider's reuse detection). Except for
  // `keep…` accounts, whose refresh token is handed back unchanged: oidc-provider's default
  // for confidential clients (it rotates them only late in their life).
  rotateRefreshToken: (ctx) => !String(ctx.oidc.entities.RefreshToken?.accountId).startsWith('keep'),
  pkce: { required: () => true },
  ttl: {
    AccessToken: (_ctx, token) => {
      const id = String(token.accountId);
      if (id.startsWith('tiny')) return 2;
      return id.startsWith('short') ? shortAtTtl : atTtl;
    },
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 24 * 3600,
    Interaction: 3600,
  },
});

provider.on('grant.success', (ctx) => {
  const gty = ctx.oidc.params?.grant_type;
  if (gty in stats) stats[gty] += 1;
  else if (gty) stats[gty] = (stats[gty] || 0) + 1;
});
provider.on('grant.error', (ctx) => {
  if (ctx.oidc?.params?.grant_type === 'refresh_token') stats.refresh_token_error += 1;
});
provider.on('grant.revoked', () => {
  stats.grants_revoked += 1;
});
provider.on('end_session.success', () => {
  stats.end_session += 1;
});
provider.on('backchannel.success', () => {
  stats.backchannel_success += 1;
});
provider.on('backchannel.error', (_ctx, err) => {
  stats.backchannel_error += 1;
  console.error('op: back-channel logout failed:', err.message);
});
provider.on('server_error', (_ctx, err) => {
  console.error('op: server_error', err);
});

provider.use(async (ctx, next) => {
  if (ctx.path === '/_e2e/stats') {
    ctx.body = stats;
    return;
  }
  await next();
  const route = ctx.oidc?.route;
  if (route === 'introspection' || route === 'revocation' || route === 'userinfo') stats[route] += 1;
});

server.on('request', provider.callback());

if (args['port-file']) fs.writeFileSync(args['port-file'], `${port}\n`);
console.log(`op: ${issuer} (gateway ${gateways.join(', ')}${replicas.length ? `; replicas ${replicas.join(', ')}` : ''})`);

const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
