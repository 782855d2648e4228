// An independent OpenID Provider for oidcgate's tests: npm `oidc-provider` (an OpenID Certified
// OP library) configured with the same demo users and clients as `oidcgate idp`, its own login
// page, automatic consent, device flow, introspection, revocation, RP-initiated and back-channel
// logout, client credentials, and RFC 9068 JWT access tokens for one API (resource indicator
// `urn:demo-api`, audience `demo-api`).
//
// Usage: node tests/peers/oidc_provider.mjs      (from any folder; it needs tests/peers/node_modules)
// It listens on 127.0.0.1 (port `PORT`, default a free one), its issuer is http://127.0.0.1:PORT,
// and when ready it prints exactly one stdout line `listening on http://127.0.0.1:PORT`. Every
// other message goes to stderr. It runs until killed.
//
// Environment (all optional):
//   PORT                              listening port (default: a free one)
//   ACCESS_TOKEN_TTL                  seconds; access tokens of the code, refresh and device
//                                     grants and client-credentials tokens (default: the
//                                     library's, 3600 and 600)
//   REFRESH_TOKEN_TTL                 seconds (default: the library's, 14 days)
//   DEFAULT_RESOURCE                  a resource indicator (e.g. urn:demo-api) used when a request
//                                     names none: then every token request yields a JWT for it
//   EXTRA_REDIRECT_URIS               space-separated, added to `demo` and `demo-public`
//   EXTRA_POST_LOGOUT_REDIRECT_URIS   space-separated, added to `demo` and `demo-public`
//   BACKCHANNEL_LOGOUT_URI            registers it as `demo`'s backchannel_logout_uri
//
// Users: alice / wonderland and bob / builder. Login page: GET /interaction/:uid renders a form
// (fields `username`, `password`) posting to /interaction/:uid/login; a wrong password shows it
// again (status 200) with "Wrong username or password". Consent is granted without a page.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

// oidc-provider prints its notices with console.info (stdout); stdout is only for the ready line.
console.info = console.error;
console.log = console.error;

const { default: Provider, errors } = await import('oidc-provider');

const API_RESOURCE = 'urn:demo-api';
const API_AUDIENCE = 'demo-api';
const API_SCOPES = 'openid profile email groups api:read api:write';

const USERS = {
  alice: {
    password: 'wonderland',
    claims: {
      sub: 'alice',
      email: 'alice@example.com',
      email_verified: true,
      name: 'Alice Liddell',
      preferred_username: 'alice',
      groups: ['admins', 'users'],
    },
  },
  bob: {
    password: 'builder',
    claims: {
      sub: 'bob',
      email: 'bob@example.com',
      email_verified: true,
      name: 'Bob the Builder',
      preferred_username: 'bob',
      groups: ['users'],
    },
  },
};

const words = (name) => (process.env[name] || '').split(/\s+/).filter(Boolean);
const seconds = (name) => {
  const value = process.env[name];
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
};
const ACCESS_TOKEN_TTL = seconds('ACCESS_TOKEN_TTL');
const REFRESH_TOKEN_TTL = seconds('REFRESH_TOKEN_TTL');
const DEFAULT_RESOURCE = process.env.DEFAULT_RESOURCE || undefined;

const INTERACTIVE_GRANTS = [
  'authorization_code',
  'refresh_token',
  'urn:ietf:params:oauth:grant-type:device_code',
];
const GATEWAY_REDIRECTS = [
  'http://127.0.0.1:4180/auth/callback',
  'http://localhost:4180/auth/callback',
  ...words('EXTRA_REDIRECT_URIS'),
];
const POST_LOGOUT_REDIRECTS = [
  'http://127.0.0.1:4180/',
  'http://localhost:4180/',
  ...words('EXTRA_POST_LOGOUT_REDIRECT_URIS'),
];

const CLIENTS = [
  {
    client_id: 'demo',
    client_secret: 'demo-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: INTERACTIVE_GRANTS,
    response_types: ['code'],
    redirect_uris: GATEWAY_REDIRECTS,
    post_logout_redirect_uris: POST_LOGOUT_REDIRECTS,
    ...(process.env.BACKCHANNEL_LOGOUT_URI
      ? {
        backchannel_logout_uri: process.env.BACKCHANNEL_LOGOUT_URI,
        backchannel_logout_session_required: true,
      }
      : {}),
  },
  {
    // `native`: http loopback redirect URIs match with any port (RFC 8252 §7.3). A `web` client
    // would need the exact URI, port included. oidc-provider asks native clients for consent on
    // every authorization request; the interaction routes below grant it without a page.
    client_id: 'demo-public',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: INTERACTIVE_GRANTS,
    response_types: ['code'],
    redirect_uris: [...GATEWAY_REDIRECTS, 'http://127.0.0.1/callback'],
    post_logout_redirect_uris: POST_LOGOUT_REDIRECTS,
  },
  {
    client_id: 'demo-service',
    client_secret: 'demo-service-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  },
  {
    // `client_secret_jwt` (OIDC Core §9): HS256 assertions keyed with the secret.
    client_id: 'demo-hmac',
    client_secret: 'demo-hmac-secret-of-at-least-thirty-two-bytes',
    token_endpoint_auth_method: 'client_secret_jwt',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  },
  // `private_key_jwt` (OIDC Core §9): the public keys come from JWT_CLIENT_JWKS (a JWKS JSON).
  ...(process.env.JWT_CLIENT_JWKS
    ? [{
      client_id: 'demo-jwt',
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: JSON.parse(process.env.JWT_CLIENT_JWKS),
      grant_types: [...INTERACTIVE_GRANTS, 'client_credentials'],
      response_types: ['code'],
      redirect_uris: GATEWAY_REDIRECTS,
      post_logout_redirect_uris: POST_LOGOUT_REDIRECTS,
    }]
    : []),
];

/** Fresh signing keys: RSA (RS256 and PS256; its JWK has no `alg`) first, then P-256 (ES256). */
function signingKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return { keys: [{ ...rsa, use: 'sig' }, { ...ec, use: 'sig' }] };
}

/** Loopback targets (back-channel logout to a test RP) skip the library's SSRF check. */
function fetchAllowingLoopback(url, options) {
  const { hostname } = new URL(url);
  if (['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) {
    delete options.dispatcher;
  }
  return globalThis.fetch(url, options);
}

function configuration() {
  return {
    clients: CLIENTS,
    jwks: signingKeys(),
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    findAccount(ctx, sub) {
      const user = USERS[sub];
      if (!user) return undefined;
      return { accountId: sub, claims: async () => ({ ...user.claims }) };
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
    claims: {
      acr: null,
      auth_time: null,
      iss: null,
      sid: null,
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Without `resource` and without DEFAULT_RESOURCE, tokens are opaque (userinfo works).
        defaultResource: async (ctx, client, oneOf) => oneOf ?? DEFAULT_RESOURCE,
        // A resource asked for in the authorization (or device) request applies to the tokens of
        // that grant even when the token request names none.
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          if (resourceIndicator !== API_RESOURCE) {
            throw new errors.InvalidTarget(`unknown resource indicator; this OP serves ${API_RESOURCE}`);
          }
          return {
            scope: API_SCOPES,
            audience: API_AUDIENCE,
            accessTokenFormat: 'jwt',
            ...(ACCESS_TOKEN_TTL ? { accessTokenTTL: ACCESS_TOKEN_TTL } : {}),
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // Refresh tokens for every client allowed the refresh_token grant, offline_access or not.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: (ctx, token) => ACCESS_TOKEN_TTL ?? token.resourceServer?.accessTokenTTL ?? 3600,
      ClientCredentials: (ctx, token) => ACCESS_TOKEN_TTL ?? token.resourceServer?.accessTokenTTL ?? 600,
      AuthorizationCode: 60,
      DeviceCode: 600,
      IdToken: 3600,
      Interaction: 3600,
      Grant: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
      RefreshToken: REFRESH_TOKEN_TTL ?? 14 * 24 * 3600,
    },
    fetch: fetchAllowingLoopback,
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = page('Error', Object.entries(out)
        .map(([k, v]) => `<p><strong>${esc(k)}</strong>: ${esc(v)}</p>`).join(''));
    },
  };
}

function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${esc(title)}</title></head>`
    + `<body><h1>${esc(title)}</h1>${body}</body></html>\n`;
}

function loginPage(uid, clientId, error) {
  return page('Sign in', `<p>Client <code>${esc(clientId)}</code> asks you to sign in.</p>`
    + (error ? `<p class="error">${esc(error)}</p>` : '')
    + `<form method="post" action="/interaction/${esc(uid)}/login">`
    + '<label>Username <input type="text" name="username" autofocus></label>'
    + '<label>Password <input type="password" name="password"></label>'
    + '<button type="submit">Sign in</button></form>');
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
  });
  res.end(html);
}

/** Grants what the consent prompt asks for (the official example's consent step, automatic). */
async function grantConsent(provider, req, res, details) {
  const { prompt: { details: missing }, params, session: { accountId } } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  const consent = details.grantId ? {} : { grantId };
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

/** GET /interaction/:uid and POST /interaction/:uid/login; false for any other path. */
async function interaction(provider, req, res) {
  const { pathname } = new URL(req.url, 'http://127.0.0.1');
  const match = /^\/interaction\/([^/]+)(\/login)?$/.exec(pathname);
  if (!match) return false;
  const [, uid, login] = match;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, page('Error', '<p>interaction mismatch</p>'));
    return true;
  }
  const { prompt, params } = details;
  if (!login && req.method === 'GET') {
    if (prompt.name === 'login') {
      send(res, 200, loginPage(uid, params.client_id));
    } else if (prompt.name === 'consent') {
      await grantConsent(provider, req, res, details);
    } else {
      send(res, 400, page('Error', `<p>unsupported prompt ${esc(prompt.name)}</p>`));
    }
    return true;
  }
  if (login && req.method === 'POST' && prompt.name === 'login') {
    const form = await readForm(req);
    const username = form.get('username') ?? '';
    const user = Object.hasOwn(USERS, username) ? USERS[username] : undefined;
    if (!user || user.password !== form.get('password')) {
      send(res, 200, loginPage(uid, params.client_id, 'Wrong username or password'));
      return true;
    }
    await provider.interactionFinished(req, res, { login: { accountId: username } }, {
      mergeWithLastSubmission: false,
    });
    return true;
  }
  send(res, 405, page('Error', '<p>method not allowed</p>'));
  return true;
}

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(process.env.PORT || 0), '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;
const provider = new Provider(issuer, configuration());
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('backchannel.error', (ctx, err, client) => console.error('backchannel.error', client.clientId, err));
const callback = provider.callback();

server.on('request', (req, res) => {
  interaction(provider, req, res)
    .then((handled) => { if (!handled) callback(req, res); })
    .catch((err) => {
      console.error('interaction error', err);
      if (!res.headersSent) send(res, err.statusCode || 500, page('Error', `<p>${esc(err.message)}</p>`));
      else res.end();
    });
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
process.stdout.write(`listening on ${issuer}\n`);
