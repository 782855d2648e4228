// Interop check: npm `openid-client` 6.x (an OpenID Certified relying party) drives the
// oidcgate development IdP whose issuer URL is argv[2].
//
// The browser part of the flow (login form, cookies) is done with Node's fetch; everything a
// relying party checks (discovery, PKCE, state, nonce, RFC 9207 `iss`, ID token signatures
// against the JWKS, token, userinfo, introspection and revocation responses) is left to
// openid-client. Each step prints one JSON line `{"step": ..., "ok": true}`; the first failure
// prints `{"step": ..., "ok": false, "error": ...}`, a readable message on stderr, and exits 1.
//
// Usage: node openid_client_interop.mjs http://127.0.0.1:PORT

import * as client from 'openid-client';

const REDIRECT_URI = 'http://127.0.0.1:4180/auth/callback';
const CSRF_COOKIE = 'oidcgate_idp_csrf';
const SESSION_COOKIE = 'oidcgate_idp_session';
const ALICE = { username: 'alice', password: 'wonderland', email: 'alice@example.com' };

class StepFailure extends Error {}

let currentStep = 'start';

function fail(message) {
  throw new StepFailure(message);
}

function check(condition, message) {
  if (!condition) fail(message);
}

/** Runs one named step; a thrown error ends the whole run. */
async function step(name, fn) {
  currentStep = name;
  const detail = await fn();
  const line = { step: name, ok: true };
  if (detail && typeof detail === 'object') line.detail = detail;
  console.log(JSON.stringify(line));
  return detail;
}

/** A readable description of anything openid-client (or fetch) throws. */
function describe(err) {
  if (!(err instanceof Error)) return String(err);
  const parts = [`${err.name}: ${err.message}`];
  if (err.code) parts.push(`code=${err.code}`);
  if (err.error) parts.push(`error=${err.error}`);
  if (err.error_description) parts.push(`error_description=${err.error_description}`);
  if (err.status) parts.push(`status=${err.status}`);
  if (err.cause !== undefined) {
    let cause = err.cause;
    if (cause instanceof Response) cause = `HTTP ${cause.status} ${cause.url}`;
    else if (cause instanceof Error) cause = describe(cause);
    else {
      try {
        cause = JSON.stringify(cause);
      } catch {
        cause = String(cause);
      }
      if (cause.length > 300) cause = `${cause.slice(0, 300)}…`;
    }
    parts.push(`cause=${cause}`);
  }
  return parts.join('; ');
}

/** Expects `fn` to be refused by the IdP with the OAuth error `expected`. */
async function expectOAuthError(fn, expected) {
  try {
    await fn();
  } catch (err) {
    if (err instanceof client.ResponseBodyError && err.error === expected) {
      return { error: err.error, status: err.status };
    }
    fail(`expected OAuth error ${expected}, got ${describe(err)}`);
  }
  fail(`expected OAuth error ${expected}, but the request succeeded`);
}

/**
 * Wraps fetch so that the tests can see how openid-client authenticated each back-channel
 * request (the header and the form body, never printed with their secrets).
 */
function recordingFetch(log) {
  return async (url, options = {}) => {
    const headers = new Headers(options.headers);
    const body =
      options.body instanceof URLSearchParams
        ? new URLSearchParams(options.body)
        : typeof options.body === 'string'
          ? new URLSearchParams(options.body)
          : new URLSearchParams();
    log.push({
      url: String(url),
      method: options.method ?? 'GET',
      authorization: headers.get('authorization'),
      body,
    });
    return fetch(url, options);
  };
}

/** The last request the recorder saw to `endpoint`. */
function lastRequestTo(log, endpoint) {
  const hit = log.findLast((r) => r.url.split('?')[0] === endpoint);
  check(hit, `no request to ${endpoint} was recorded`);
  return hit;
}

/** Asserts a request used client_secret_basic for `clientId`/`secret` and nothing else. */
function assertBasic(request, clientId, secret) {
  const auth = request.authorization ?? '';
  check(auth.startsWith('Basic '), `expected client_secret_basic, got Authorization: ${auth ? auth.split(' ')[0] : '(none)'}`);
  const decoded = Buffer.from(auth.slice(6), 'base64').toString('utf8');
  const [id, pw] = decoded.split(':').map((s) => decodeURIComponent(s.replace(/\+/g, ' ')));
  check(id === clientId && pw === secret, 'the Basic credentials are not the client id and secret');
  check(!request.body.has('client_secret'), 'client_secret was also sent in the body');
}

/** A tiny cookie jar for one origin: name → value, from Set-Cookie headers. */
class CookieJar {
  constructor() {
    this.cookies = new Map();
  }
  store(response) {
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attributes] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const maxAge = attributes.map((a) => a.trim().toLowerCase()).find((a) => a.startsWith('max-age='));
      if (maxAge && Number(maxAge.slice(8)) <= 0) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
  get(name) {
    return this.cookies.get(name);
  }
  header() {
    return [...this.cookies].map(([n, v]) => `${n}=${v}`).join('; ');
  }
}

function htmlUnescape(s) {
  return s
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The attributes of every `<input>` in an HTML page, and the first form's action. */
function parseForm(html) {
  const attrs = (tag) => {
    const out = {};
    for (const m of tag.matchAll(/([a-zA-Z_:-]+)\s*=\s*"([^"]*)"/g)) out[m[1].toLowerCase()] = htmlUnescape(m[2]);
    return out;
  };
  const formTag = html.match(/<form\b[^>]*>/i);
  const form = formTag ? attrs(formTag[0]) : {};
  const fields = new Map();
  for (const m of html.matchAll(/<input\b[^>]*>/gi)) {
    const a = attrs(m[0]);
    if (a.name) fields.set(a.name, a.value ?? '');
  }
  return { action: form.action, method: (form.method ?? 'get').toLowerCase(), fields };
}

/**
 * GETs the authorization URL like a browser (no redirects followed). Returns the response and
 * its body; cookies go into `jar`.
 */
async function openAuthorizationUrl(url, jar) {
  const response = await fetch(url, {
    redirect: 'manual',
    headers: jar.header() ? { cookie: jar.header() } : {},
  });
  jar.store(response);
  const body = await response.text();
  return { response, body };
}

/** Fills in the login form of `page` and posts it; returns the IdP's answer. */
async function submitLogin(issuer, page, jar, user) {
  check(page.response.status === 200, `the authorization request got HTTP ${page.response.status}, expected the login page`);
  check(/text\/html/.test(page.response.headers.get('content-type') ?? ''), 'the login page is not HTML');
  const form = parseForm(page.body);
  check(form.method === 'post', `the login form method is ${form.method}`);
  const action = new URL(form.action ?? '', page.response.url || issuer);
  check(action.href === `${issuer}/login`, `the login form posts to ${action.href}, expected ${issuer}/login`);
  const request = form.fields.get('request');
  const csrf = form.fields.get('csrf');
  check(request, 'the login form has no "request" field');
  check(csrf, 'the login form has no "csrf" field');
  const csrfCookie = jar.get(CSRF_COOKIE);
  check(csrfCookie, `the login page set no ${CSRF_COOKIE} cookie`);
  check(csrfCookie === csrf, 'the CSRF cookie and the form field differ');

  const response = await fetch(action, {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      cookie: jar.header(),
    },
    body: new URLSearchParams({ request, csrf, username: user.username, password: user.password }),
  });
  jar.store(response);
  return response;
}

/**
 * Plays the user on the RFC 8628 verification page with a fresh browser (cookie jar):
 * `verification_uri_complete` → login form → 303 back to `/device?user_code=…` → the
 * confirmation form, submitted with its approve or deny button. Returns what the page said.
 */
async function decideOnVerificationPage(issuer, device, decision) {
  const jar = new CookieJar();
  const get = async (url) => {
    const response = await fetch(url, { redirect: 'manual', headers: jar.header() ? { cookie: jar.header() } : {} });
    jar.store(response);
    return { response, body: await response.text() };
  };
  check(device.verification_uri === `${issuer}/device`, `verification_uri ${device.verification_uri}`);
  const complete = new URL(device.verification_uri_complete ?? '');
  check(
    `${complete.origin}${complete.pathname}` === `${issuer}/device` && complete.searchParams.get('user_code') === device.user_code,
    `verification_uri_complete ${device.verification_uri_complete}`,
  );

  // Not signed in: the login form (with the pending device request behind `request`).
  const loginPage = await get(complete);
  const afterLogin = await submitLogin(issuer, loginPage, jar, ALICE);
  check(afterLogin.status === 303, `login from the device page answered HTTP ${afterLogin.status}, expected 303`);
  check(jar.get(SESSION_COOKIE), `no ${SESSION_COOKIE} cookie after login`);
  const back = new URL(afterLogin.headers.get('location') ?? '', issuer);
  check(
    `${back.origin}${back.pathname}` === `${issuer}/device` && back.searchParams.get('user_code') === device.user_code,
    `after login redirected to ${back.href}, expected ${issuer}/device?user_code=${device.user_code}`,
  );

  // Signed in: the confirmation form.
  const confirm = await get(back);
  check(confirm.response.status === 200, `the confirmation page answered HTTP ${confirm.response.status}`);
  const form = parseForm(confirm.body);
  check(form.method === 'post', `the confirmation form method is ${form.method}`);
  const action = new URL(form.action ?? '', issuer);
  check(action.href === `${issuer}/device`, `the confirmation form posts to ${action.href}`);
  check(form.fields.get('user_code') === device.user_code, `the form's user_code is ${form.fields.get('user_code')}`);
  const csrf = form.fields.get('csrf');
  check(csrf && jar.get(CSRF_COOKIE) === csrf, 'the confirmation form CSRF field and cookie differ');
  const buttons = [...confirm.body.matchAll(/<button\b[^>]*\bname="([^"]*)"[^>]*\bvalue="([^"]*)"/gi)].map((m) => [m[1], m[2]]);
  check(buttons[0]?.[0] === 'approve', `the first submit button is ${JSON.stringify(buttons[0])}, expected approve`);
  const button = buttons.find(([name]) => name === decision);
  check(button, `no ${decision} button on the confirmation page`);

  const fields = new URLSearchParams([...form.fields]);
  fields.set(button[0], button[1]);
  const response = await fetch(action, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: jar.header() },
    body: fields,
  });
  const text = await response.text();
  check(response.status === 200, `POST /device (${decision}) answered HTTP ${response.status}: ${text.slice(0, 200)}`);
  const said = text.match(/<p>([^<]*)<\/p>/)?.[1] ?? '';
  return said;
}

/** The redirect of a query-mode answer, checked to be our redirect URI. */
function callbackFrom(response) {
  check(
    response.status >= 300 && response.status < 400,
    `expected a redirect to the client, got HTTP ${response.status}`,
  );
  const location = response.headers.get('location');
  check(location, 'the redirect has no Location header');
  const url = new URL(location);
  check(`${url.origin}${url.pathname}` === REDIRECT_URI, `redirected to ${url.origin}${url.pathname}, expected ${REDIRECT_URI}`);
  check(!url.searchParams.has('error'), `the IdP answered error=${url.searchParams.get('error')}: ${url.searchParams.get('error_description')}`);
  return url;
}

/** A fresh authorization request: PKCE S256, state and nonce. */
async function newAuthorizationRequest(config, extra = {}) {
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(pkceCodeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid profile email',
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  return { url, pkceCodeVerifier, codeChallenge, state, nonce };
}

/** Checks the ID token claims openid-client validated, against what we expect of alice. */
function checkIdToken(claims, { clientId, issuer, nonce }) {
  check(claims, 'no ID token claims');
  check(claims.iss === issuer, `ID token iss ${claims.iss}`);
  check(claims.sub === ALICE.username, `ID token sub ${claims.sub}, expected alice`);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  check(aud.includes(clientId), `ID token aud ${JSON.stringify(claims.aud)} lacks ${clientId}`);
  if (nonce !== undefined) check(claims.nonce === nonce, 'ID token nonce differs');
  check(typeof claims.auth_time === 'number', 'ID token has no auth_time');
}

async function main() {
  const issuerArg = process.argv[2];
  if (!issuerArg) {
    console.error('usage: node openid_client_interop.mjs ISSUER_URL');
    process.exit(2);
  }
  const issuer = issuerArg.replace(/\/$/, '');
  const log = [];
  const insecure = { execute: [client.allowInsecureRequests], [client.customFetch]: recordingFetch(log) };

  // --- confidential client `demo` -------------------------------------------------------------
  // With a secret and no explicit ClientAuth, openid-client 6 picks client_secret_post; the
  // IdP registers `demo` as client_secret_basic, so basic is asked for explicitly (and checked).
  let config;
  await step('discovery', async () => {
    config = await client.discovery(new URL(issuer), 'demo', 'demo-secret', client.ClientSecretBasic('demo-secret'), insecure);
    config[client.customFetch] = recordingFetch(log);
    const md = config.serverMetadata();
    check(md.issuer === issuer, `discovery issuer ${md.issuer}`);
    check(md.code_challenge_methods_supported?.includes('S256'), 'S256 is not advertised');
    check(md.authorization_response_iss_parameter_supported === true, 'RFC 9207 iss is not advertised');
    client.enableNonRepudiationChecks(config);
    return { token_endpoint_auth: 'client_secret_basic' };
  });

  let auth;
  await step('authorization_url', async () => {
    auth = await newAuthorizationRequest(config);
    const p = auth.url.searchParams;
    check(auth.url.href.startsWith(`${issuer}/authorize?`), `authorization URL ${auth.url.href}`);
    check(p.get('client_id') === 'demo' && p.get('response_type') === 'code', 'client_id/response_type');
    check(p.get('code_challenge_method') === 'S256', 'code_challenge_method');
  });

  const jar = new CookieJar();
  let page;
  await step('login_page', async () => {
    page = await openAuthorizationUrl(auth.url, jar);
    check(page.response.status === 200, `authorization endpoint answered HTTP ${page.response.status}`);
    check(jar.get(CSRF_COOKIE), 'no CSRF cookie');
  });

  let callback;
  await step('login', async () => {
    const response = await submitLogin(issuer, page, jar, ALICE);
    callback = callbackFrom(response);
    check(callback.searchParams.get('code'), 'no code in the redirect');
    check(callback.searchParams.get('state') === auth.state, 'state differs in the redirect');
    check(callback.searchParams.get('iss') === issuer, `iss in the redirect is ${callback.searchParams.get('iss')}`);
    check(jar.get(SESSION_COOKIE), `no ${SESSION_COOKIE} cookie after login`);
  });

  let tokens;
  await step('authorization_code_grant', async () => {
    tokens = await client.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: auth.pkceCodeVerifier,
      expectedState: auth.state,
      expectedNonce: auth.nonce,
      idTokenExpected: true,
    });
    assertBasic(lastRequestTo(log, config.serverMetadata().token_endpoint), 'demo', 'demo-secret');
    check(tokens.access_token, 'no access token');
    check(tokens.token_type?.toLowerCase() === 'bearer', `token_type ${tokens.token_type}`);
    check(tokens.refresh_token, 'no refresh token');
    check(tokens.id_token, 'no ID token');
    checkIdToken(tokens.claims(), { clientId: 'demo', issuer, nonce: auth.nonce });
    // enableNonRepudiationChecks: the ID token signature was checked against the JWKS.
    check(log.some((r) => r.url === config.serverMetadata().jwks_uri), 'the JWKS was never fetched');
    const header = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url').toString('utf8'));
    return { expires_in: tokens.expiresIn(), scope: tokens.scope, id_token_alg: header.alg, kid: header.kid };
  });

  const sub = tokens.claims().sub;
  await step('userinfo', async () => {
    const info = await client.fetchUserInfo(config, tokens.access_token, sub);
    check(info.sub === sub, `userinfo sub ${info.sub}`);
    check(info.email === ALICE.email, `userinfo email ${info.email}`);
    check(info.email_verified === true, 'email_verified is not true');
    check(typeof info.name === 'string', 'userinfo has no name (profile scope)');
    return { sub: info.sub, email: info.email, name: info.name };
  });

  await step('introspection_user_token', async () => {
    const info = await client.tokenIntrospection(config, tokens.access_token);
    assertBasic(lastRequestTo(log, config.serverMetadata().introspection_endpoint), 'demo', 'demo-secret');
    check(info.active === true, 'the fresh access token is not active');
    check(info.sub === sub && info.client_id === 'demo', `introspection: ${JSON.stringify(info)}`);
  });

  const oldRefresh = tokens.refresh_token;
  let refreshed;
  await step('refresh_token_grant', async () => {
    refreshed = await client.refreshTokenGrant(config, oldRefresh);
    assertBasic(lastRequestTo(log, config.serverMetadata().token_endpoint), 'demo', 'demo-secret');
    check(refreshed.access_token && refreshed.access_token !== tokens.access_token, 'no new access token');
    check(refreshed.refresh_token, 'no refresh token in the refresh response');
    check(refreshed.refresh_token !== oldRefresh, 'the refresh token was not rotated');
    if (refreshed.id_token) {
      // OIDC Core §12.2: same iss/sub/aud/auth_time, no nonce requirement.
      const c = refreshed.claims();
      check(c.sub === sub, 'the refreshed ID token has another sub');
      check(c.auth_time === tokens.claims().auth_time, 'auth_time changed on refresh');
    }
    return { id_token: Boolean(refreshed.id_token) };
  });

  await step('refresh_old_token_reuse_refused', async () =>
    expectOAuthError(() => client.refreshTokenGrant(config, oldRefresh), 'invalid_grant'));

  await step('refresh_family_revoked', async () =>
    expectOAuthError(() => client.refreshTokenGrant(config, refreshed.refresh_token), 'invalid_grant'));

  await step('family_access_token_revoked', async () => {
    const info = await client.tokenIntrospection(config, refreshed.access_token);
    check(info.active === false, `the family's access token is still active: ${JSON.stringify(info)}`);
  });

  // A second authorization answered by the SSO session at once (no login form); its code is
  // then presented twice. RFC 6749 §4.1.2: the reuse is refused and what the code issued is
  // revoked.
  let ssoAuth;
  let ssoCallback;
  let ssoTokens;
  await step('sso_authorization', async () => {
    ssoAuth = await newAuthorizationRequest(config);
    const again = await openAuthorizationUrl(ssoAuth.url, jar);
    ssoCallback = callbackFrom(again.response);
    check(ssoCallback.searchParams.get('state') === ssoAuth.state, 'state differs');
    check(ssoCallback.searchParams.get('iss') === issuer, 'iss differs');
    ssoTokens = await client.authorizationCodeGrant(config, ssoCallback, {
      pkceCodeVerifier: ssoAuth.pkceCodeVerifier,
      expectedState: ssoAuth.state,
      expectedNonce: ssoAuth.nonce,
      idTokenExpected: true,
    });
    checkIdToken(ssoTokens.claims(), { clientId: 'demo', issuer, nonce: ssoAuth.nonce });
    check(ssoTokens.claims().auth_time === tokens.claims().auth_time, 'SSO changed auth_time');
  });

  await step('code_reuse_refused', async () =>
    expectOAuthError(
      () =>
        client.authorizationCodeGrant(config, ssoCallback, {
          pkceCodeVerifier: ssoAuth.pkceCodeVerifier,
          expectedState: ssoAuth.state,
          expectedNonce: ssoAuth.nonce,
          idTokenExpected: true,
        }),
      'invalid_grant',
    ));

  await step('code_reuse_revoked_tokens', async () => {
    const info = await client.tokenIntrospection(config, ssoTokens.access_token);
    check(info.active === false, `access token from a reused code is still active: ${JSON.stringify(info)}`);
    await expectOAuthError(() => client.refreshTokenGrant(config, ssoTokens.refresh_token), 'invalid_grant');
  });

  // The signature check is real: an ID token whose signature was altered in transit is refused.
  await step('tampered_id_token_refused', async () => {
    const tamper = async (url, options) => {
      const response = await fetch(url, options);
      if (String(url) !== config.serverMetadata().token_endpoint || !response.ok) return response;
      const body = await response.json();
      const [h, p, sig] = body.id_token.split('.');
      const i = Math.floor(sig.length / 2);
      const flipped = sig[i] === 'A' ? 'B' : 'A';
      body.id_token = `${h}.${p}.${sig.slice(0, i)}${flipped}${sig.slice(i + 1)}`;
      return new Response(JSON.stringify(body), { status: response.status, headers: response.headers });
    };
    const tampered = await client.discovery(new URL(issuer), 'demo', 'demo-secret', client.ClientSecretBasic('demo-secret'), insecure);
    tampered[client.customFetch] = tamper;
    client.enableNonRepudiationChecks(tampered);
    const a = await newAuthorizationRequest(tampered);
    const cb = callbackFrom((await openAuthorizationUrl(a.url, jar)).response);
    try {
      await client.authorizationCodeGrant(tampered, cb, {
        pkceCodeVerifier: a.pkceCodeVerifier,
        expectedState: a.state,
        expectedNonce: a.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      const why = err instanceof Error && err.cause instanceof Error ? err.cause.message : describe(err);
      check(/signature/i.test(why), `refused, but not for its signature: ${describe(err)}`);
      return { refused: why };
    }
    fail('an ID token with a broken signature was accepted');
  });

  // client_secret_post (openid-client's own default for a secret) is accepted too.
  await step('client_secret_post_default', async () => {
    const postLog = [];
    const postConfig = await client.discovery(new URL(issuer), 'demo', 'demo-secret', undefined, {
      execute: [client.allowInsecureRequests],
      [client.customFetch]: recordingFetch(postLog),
    });
    postConfig[client.customFetch] = recordingFetch(postLog);
    const info = await client.tokenIntrospection(postConfig, tokens.access_token);
    const req = lastRequestTo(postLog, postConfig.serverMetadata().introspection_endpoint);
    check(req.authorization === null, 'the default sent an Authorization header');
    check(req.body.get('client_id') === 'demo' && req.body.has('client_secret'), 'the default did not use client_secret_post');
    check(typeof info.active === 'boolean', 'introspection answered no active member');
    return { default_method: 'client_secret_post' };
  });

  // --- client credentials: `demo-service` -------------------------------------------------------
  let service;
  let serviceToken;
  await step('client_credentials_grant', async () => {
    service = await client.discovery(
      new URL(issuer),
      'demo-service',
      'demo-service-secret',
      client.ClientSecretBasic('demo-service-secret'),
      insecure,
    );
    service[client.customFetch] = recordingFetch(log);
    serviceToken = await client.clientCredentialsGrant(service, { scope: 'read' });
    assertBasic(lastRequestTo(log, service.serverMetadata().token_endpoint), 'demo-service', 'demo-service-secret');
    check(serviceToken.access_token, 'no access token');
    check(serviceToken.token_type?.toLowerCase() === 'bearer', `token_type ${serviceToken.token_type}`);
    check(!serviceToken.refresh_token, 'client credentials issued a refresh token');
    check(!serviceToken.id_token, 'client credentials issued an ID token');
    return { scope: serviceToken.scope, expires_in: serviceToken.expiresIn() };
  });

  await step('introspection_active', async () => {
    const info = await client.tokenIntrospection(service, serviceToken.access_token);
    check(info.active === true, `not active: ${JSON.stringify(info)}`);
    check(info.client_id === 'demo-service', `client_id ${info.client_id}`);
    check(info.scope === 'read', `scope ${info.scope}`);
    return { sub: info.sub, scope: info.scope, exp: info.exp };
  });

  await step('revocation', async () => {
    await client.tokenRevocation(service, serviceToken.access_token);
    assertBasic(lastRequestTo(log, service.serverMetadata().revocation_endpoint), 'demo-service', 'demo-service-secret');
  });

  await step('introspection_after_revocation', async () => {
    const info = await client.tokenIntrospection(service, serviceToken.access_token);
    check(info.active === false, `still active after revocation: ${JSON.stringify(info)}`);
  });

  // --- public client `demo-public`: no secret, PKCE -----------------------------------------
  let pub;
  await step('public_discovery', async () => {
    pub = await client.discovery(new URL(issuer), 'demo-public', undefined, client.None(), insecure);
    pub[client.customFetch] = recordingFetch(log);
    client.enableNonRepudiationChecks(pub);
  });

  const pubJar = new CookieJar();
  let pubAuth;
  let pubTokens;
  await step('public_login_and_code_grant', async () => {
    pubAuth = await newAuthorizationRequest(pub);
    const pubPage = await openAuthorizationUrl(pubAuth.url, pubJar);
    const response = await submitLogin(issuer, pubPage, pubJar, ALICE);
    const cb = callbackFrom(response);
    check(cb.searchParams.get('iss') === issuer, 'iss in the redirect');
    pubTokens = await client.authorizationCodeGrant(pub, cb, {
      pkceCodeVerifier: pubAuth.pkceCodeVerifier,
      expectedState: pubAuth.state,
      expectedNonce: pubAuth.nonce,
      idTokenExpected: true,
    });
    const req = lastRequestTo(log, pub.serverMetadata().token_endpoint);
    check(req.authorization === null && !req.body.has('client_secret'), 'the public client sent a secret');
    check(req.body.get('client_id') === 'demo-public', 'no client_id in the body');
    check(req.body.get('code_verifier') === pubAuth.pkceCodeVerifier, 'no code_verifier sent');
    checkIdToken(pubTokens.claims(), { clientId: 'demo-public', issuer, nonce: pubAuth.nonce });
  });

  await step('public_userinfo', async () => {
    const info = await client.fetchUserInfo(pub, pubTokens.access_token, pubTokens.claims().sub);
    check(info.email === ALICE.email, `userinfo email ${info.email}`);
  });

  await step('public_pkce_required', async () => {
    // Without a code_challenge the IdP must answer the redirect URI with invalid_request.
    const url = client.buildAuthorizationUrl(pub, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid',
      state: client.randomState(),
    });
    const { response } = await openAuthorizationUrl(url, new CookieJar());
    const location = new URL(response.headers.get('location') ?? 'about:blank');
    check(location.searchParams.get('error') === 'invalid_request', `expected error=invalid_request, got ${location.href}`);
  });

  // form_post response mode (SSO session from the public login above): openid-client takes the
  // POSTed callback as a Request.
  await step('public_form_post_sso', async () => {
    const a = await newAuthorizationRequest(pub, { response_mode: 'form_post' });
    const { response, body } = await openAuthorizationUrl(a.url, pubJar);
    check(response.status === 200, `form_post answered HTTP ${response.status}`);
    const form = parseForm(body);
    check(form.method === 'post' && form.action === REDIRECT_URI, `form_post form posts to ${form.action}`);
    const fields = new URLSearchParams([...form.fields]);
    check(fields.get('code') && fields.get('state') === a.state && fields.get('iss') === issuer, 'form_post fields');
    const request = new Request(REDIRECT_URI, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: fields,
    });
    const t = await client.authorizationCodeGrant(pub, request, {
      pkceCodeVerifier: a.pkceCodeVerifier,
      expectedState: a.state,
      expectedNonce: a.nonce,
      idTokenExpected: true,
    });
    checkIdToken(t.claims(), { clientId: 'demo-public', issuer, nonce: a.nonce });
  });

  await step('public_refresh_and_revocation', async () => {
    const r = await client.refreshTokenGrant(pub, pubTokens.refresh_token);
    check(r.refresh_token && r.refresh_token !== pubTokens.refresh_token, 'the refresh token was not rotated');
    await client.tokenRevocation(pub, r.refresh_token);
    await expectOAuthError(() => client.refreshTokenGrant(pub, r.refresh_token), 'invalid_grant');
  });

  // --- device authorization grant (RFC 8628) with `demo` -------------------------------------
  // openid-client waits `interval` (5 s) before each poll, so the user acts on the verification
  // page while the first wait runs.
  await step('device_flow_approved', async () => {
    const started = Date.now();
    const md = config.serverMetadata();
    check(md.device_authorization_endpoint === `${issuer}/device_authorization`, `device_authorization_endpoint ${md.device_authorization_endpoint}`);
    const device = await client.initiateDeviceAuthorization(config, { scope: 'openid profile' });
    assertBasic(lastRequestTo(log, md.device_authorization_endpoint), 'demo', 'demo-secret');
    check(device.device_code && device.user_code, 'no device_code/user_code');
    check(device.interval === 5, `interval ${device.interval}`);
    const polling = client.pollDeviceAuthorizationGrant(config, device);
    polling.catch(() => {}); // awaited below; avoid an unhandled rejection meanwhile
    const said = await decideOnVerificationPage(issuer, device, 'approve');
    const approvedAfter = Date.now() - started;
    const t = await polling;
    const polls = log.filter((r) => r.url === md.token_endpoint && r.body.get('device_code') === device.device_code);
    assertBasic(polls.at(-1), 'demo', 'demo-secret');
    check(t.access_token, 'no access token');
    check(t.id_token, 'no ID token');
    checkIdToken(t.claims(), { clientId: 'demo', issuer });
    const info = await client.fetchUserInfo(config, t.access_token, t.claims().sub);
    check(info.sub === ALICE.username && typeof info.name === 'string', `userinfo ${JSON.stringify(info)}`);
    return {
      user_code: device.user_code,
      page: said,
      sub: t.claims().sub,
      scope: t.scope,
      refresh_token: Boolean(t.refresh_token),
      polls: polls.length,
      approved_after_ms: approvedAfter,
      elapsed_ms: Date.now() - started,
    };
  });

  await step('device_flow_denied', async () => {
    const started = Date.now();
    const device = await client.initiateDeviceAuthorization(config, { scope: 'openid profile' });
    const polling = client.pollDeviceAuthorizationGrant(config, device);
    polling.catch(() => {});
    const said = await decideOnVerificationPage(issuer, device, 'deny');
    const refused = await expectOAuthError(() => polling, 'access_denied');
    return { page: said, ...refused, elapsed_ms: Date.now() - started };
  });

  // --- RP-initiated logout with `demo`, in the browser session of the first login -------------
  await step('rp_initiated_logout', async () => {
    const started = Date.now();
    const md = config.serverMetadata();
    check(md.end_session_endpoint === `${issuer}/logout`, `end_session_endpoint ${md.end_session_endpoint}`);
    check(jar.get(SESSION_COOKIE), 'the first login session cookie is gone before logout');
    const sessionCookies = jar.header();
    const state = client.randomState();
    const url = client.buildEndSessionUrl(config, {
      id_token_hint: tokens.id_token,
      post_logout_redirect_uri: 'http://127.0.0.1:4180/',
      state,
    });
    check(url.href.startsWith(`${issuer}/logout?`), `end session URL ${url.href}`);
    const response = await fetch(url, { redirect: 'manual', headers: { cookie: sessionCookies } });
    await response.body?.cancel();
    check(response.status === 303, `logout answered HTTP ${response.status}, expected 303`);
    const location = response.headers.get('location');
    const expected = `http://127.0.0.1:4180/?state=${encodeURIComponent(state)}`;
    check(location === expected, `logout redirected to ${location}, expected ${expected}`);
    const cleared = response.headers
      .getSetCookie()
      .some((c) => c.startsWith(`${SESSION_COOKIE}=`) && /max-age=0/i.test(c));
    check(cleared, `logout did not clear the ${SESSION_COOKIE} cookie`);
    jar.store(response);
    check(!jar.get(SESSION_COOKIE), 'the session cookie survived logout in the jar');

    // The session is over at the IdP, not only in the browser: even the old session cookie
    // (a browser that ignored the clearing) gets the login form, no redirect.
    const a = await newAuthorizationRequest(config);
    const again = await fetch(a.url, { redirect: 'manual', headers: { cookie: sessionCookies } });
    const body = await again.text();
    check(again.status === 200, `authorization after logout answered HTTP ${again.status} (location ${again.headers.get('location')}), expected the login form`);
    check(/<input\b[^>]*type="password"/i.test(body), 'the page after logout has no password field');
    return { location, elapsed_ms: Date.now() - started };
  });
}

// Generous: each device flow waits openid-client's 5 s polling interval at least once.
const watchdog = setTimeout(() => {
  console.log(JSON.stringify({ step: currentStep, ok: false, error: 'timed out after 90 s' }));
  console.error(`openid-client interop: step "${currentStep}" timed out after 90 s`);
  process.exit(1);
}, 90_000);

try {
  await main();
  clearTimeout(watchdog);
  console.log(JSON.stringify({ step: 'done', ok: true }));
} catch (err) {
  clearTimeout(watchdog);
  const error = err instanceof StepFailure ? err.message : describe(err);
  console.log(JSON.stringify({ step: currentStep, ok: false, error }));
  console.error(`openid-client interop: step "${currentStep}" failed: ${error}`);
  if (!(err instanceof StepFailure) && err instanceof Error && err.stack) console.error(err.stack);
  process.exit(1);
}
