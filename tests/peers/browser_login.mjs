// Browser check: a real headless Chromium (Debian's /usr/bin/chromium, driven by npm
// `playwright-core`) signs in as alice through the oidcgate development IdP's own login page.
//
// This script plays the relying party: a small node:http server on a free 127.0.0.1 port serves
// the redirect URI /auth/callback (the IdP ignores the port of 127.0.0.1 redirect URIs,
// RFC 8252 §7.3, so client `demo`'s registered http://127.0.0.1:4180/auth/callback matches). It
// builds the authorization request itself (state, nonce, PKCE S256), lets the browser show the
// login form, types a wrong password and then the right one, checks the redirect back (code,
// state, RFC 9207 `iss`), redeems the code at the token endpoint and reads the ID token's
// claims (signatures are checked by openid_client_interop.mjs, not here). Finally it starts a
// second authorization request in the same browser context and checks that the IdP's SSO
// session answers it without showing the login form.
//
// Each step prints one JSON line `{"step": ..., "ok": true}`; the first failure prints
// `{"step": ..., "ok": false, "error": ...}`, a readable message on stderr, and exits 1. The
// browser and the callback server are always closed; a watchdog ends everything after 60 s.
//
// Usage: node browser_login.mjs http://127.0.0.1:PORT

import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox', // the tests run as root
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  // Without these Chromium keeps calling Google's services, which this closed network refuses.
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const CLIENT = { id: 'demo', secret: 'demo-secret' };
const ALICE = { username: 'alice', password: 'wonderland' };
const SCOPE = 'openid profile email';
const WATCHDOG_MS = 60_000;
const WAIT_MS = 15_000;

class StepFailure extends Error {}

let currentStep = 'start';
let browser;
let server;
let page;

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

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function decodeJwtPayload(jwt) {
  const parts = String(jwt).split('.');
  check(parts.length === 3, `the id_token is not a compact JWS: ${String(jwt).slice(0, 80)}`);
  try {
    return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  } catch (err) {
    fail(`the id_token payload is not base64url JSON: ${err.message}`);
  }
}

/** A fresh authorization request: the URL and the secrets the RP keeps. */
function authorizationRequest(issuer, redirectUri) {
  const state = b64url(randomBytes(16));
  const nonce = b64url(randomBytes(16));
  const verifier = b64url(randomBytes(32)); // 43 characters
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  const url = new URL(`${issuer}/authorize`);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT.id,
    redirect_uri: redirectUri,
    scope: SCOPE,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  return { url: url.toString(), state, nonce, verifier };
}

/** The relying party's redirect URI: records every callback and says "callback ok". */
function startCallbackServer() {
  const hits = [];
  const waiters = [];
  const srv = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (req.method === 'GET' && url.pathname === '/auth/callback') {
      const query = Object.fromEntries(url.searchParams);
      hits.push(query);
      for (const w of waiters.splice(0)) w();
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end('<!doctype html><html><head><title>callback</title></head><body><p id="result">callback ok</p></body></html>');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
    }
  });
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      resolve({ srv, hits, port, redirectUri: `http://127.0.0.1:${port}/auth/callback` });
    });
  });
}

/** A short description of what the browser shows, for failure messages. */
async function showing() {
  if (!page) return '';
  try {
    const text = (await page.locator('body').innerText({ timeout: 2000 })).replace(/\s+/g, ' ');
    return ` (browser at ${page.url()}: "${text.slice(0, 300)}")`;
  } catch {
    return ` (browser at ${page.url()})`;
  }
}

/** Redeems `code` at the token endpoint with client_secret_basic and returns the JSON. */
async function redeem(issuer, code, redirectUri, verifier) {
  const basic = Buffer.from(
    `${encodeURIComponent(CLIENT.id)}:${encodeURIComponent(CLIENT.secret)}`,
  ).toString('base64');
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${basic}`,
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
    },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
    }),
  });
  const text = await res.text();
  check(res.status === 200, `token endpoint answered ${res.status}: ${text.slice(0, 300)}`);
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    fail(`token endpoint answered non-JSON: ${text.slice(0, 300)}`);
  }
  check(typeof body.id_token === 'string', `no id_token in the token response: ${text.slice(0, 300)}`);
  check(typeof body.access_token === 'string', 'no access_token in the token response');
  check(String(body.token_type).toLowerCase() === 'bearer', `token_type ${body.token_type}`);
  return body;
}

/** Checks the ID token's claims for this request. */
function checkIdToken(idToken, issuer, nonce) {
  const claims = decodeJwtPayload(idToken);
  check(claims.sub === ALICE.username, `id_token sub is ${JSON.stringify(claims.sub)}, not "alice"`);
  check(claims.nonce === nonce, `id_token nonce ${JSON.stringify(claims.nonce)} != ${nonce}`);
  check(claims.iss === issuer, `id_token iss ${claims.iss} != ${issuer}`);
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  check(aud.includes(CLIENT.id), `id_token aud ${JSON.stringify(claims.aud)} lacks ${CLIENT.id}`);
  check(Number.isInteger(claims.auth_time), `id_token auth_time ${claims.auth_time}`);
  return claims;
}

/** Checks a callback's query against the request that led to it. */
function checkCallback(query, issuer, state) {
  check(!query.error, `the IdP answered error=${query.error} (${query.error_description})`);
  check(query.state === state, `state ${JSON.stringify(query.state)} != ${state}`);
  check(query.iss === issuer, `iss ${JSON.stringify(query.iss)} != ${issuer} (RFC 9207)`);
  check(typeof query.code === 'string' && query.code.length >= 16, `no usable code: ${JSON.stringify(query)}`);
}

async function closeAll() {
  const b = browser;
  const s = server;
  browser = undefined;
  server = undefined;
  await Promise.allSettled([
    b ? b.close() : Promise.resolve(),
    s
      ? new Promise((resolve) => {
          s.closeAllConnections?.();
          s.close(() => resolve());
        })
      : Promise.resolve(),
  ]);
}

async function main() {
  const issuer = process.argv[2];
  if (!issuer || !/^https?:\/\/[^/]+$/.test(issuer)) {
    console.error('usage: node browser_login.mjs http://127.0.0.1:PORT (the issuer, no trailing slash)');
    process.exit(2);
  }

  const { hits, redirectUri } = await startCallbackServer().then((started) => {
    server = started.srv;
    return started;
  });
  await step('callback server', async () => ({ redirect_uri: redirectUri }));

  await step('launch chromium', async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30_000,
    });
    return { version: browser.version() };
  });

  // A new context is a fresh, empty profile (cookies included); playwright gives every launch
  // its own temporary --user-data-dir and deletes it on close.
  const context = await browser.newContext({ javaScriptEnabled: true });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  page = await context.newPage();
  const mainFrameUrls = [];
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) mainFrameUrls.push(frame.url());
  });

  const first = authorizationRequest(issuer, redirectUri);

  await step('login page shown', async () => {
    const res = await page.goto(first.url);
    check(res && res.status() === 200, `GET /authorize answered ${res && res.status()}${await showing()}`);
    check(page.url().startsWith(`${issuer}/authorize?`), `expected the login page, got ${page.url()}`);
    check(await page.locator('input[name="username"]').isVisible(), `no username field${await showing()}`);
    check(await page.locator('input[name="password"]').isVisible(), `no password field${await showing()}`);
    check(await page.getByRole('button', { name: 'Sign in' }).isVisible(), `no "Sign in" button${await showing()}`);
    check(hits.length === 0, 'the callback was called before signing in');
    return { title: await page.title() };
  });

  await step('wrong password refused', async () => {
    await page.locator('input[name="username"]').fill(ALICE.username);
    await page.locator('input[name="password"]').fill('not-the-password');
    // The form's navigation (POST /login), whatever it answers.
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.request().isNavigationRequest() && r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    await page.waitForLoadState('load');
    check(res.url() === `${issuer}/login`, `the form was posted to ${res.url()}, not ${issuer}/login`);
    check(res.status() === 401, `POST /login with a wrong password answered ${res.status()}${await showing()}`);
    const alert = page.getByRole('alert');
    await alert.waitFor({ state: 'visible' });
    const text = await alert.innerText();
    check(text.includes('Wrong username or password'), `the alert says "${text}"${await showing()}`);
    check(await page.locator('input[name="password"]').isVisible(), `the form is gone${await showing()}`);
    check(hits.length === 0, 'the callback was called after a wrong password');
    return { status: res.status(), alert: text };
  });

  await step('sign in as alice', async () => {
    await page.locator('input[name="username"]').fill(ALICE.username);
    await page.locator('input[name="password"]').fill(ALICE.password);
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(`${redirectUri}?`)),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    const text = await page.locator('#result').innerText();
    check(text === 'callback ok', `the callback page says "${text}"`);
    check(hits.length === 1, `the callback was called ${hits.length} times`);
    const query = hits[0];
    checkCallback(query, issuer, first.state);
    const fromUrl = Object.fromEntries(new URL(page.url()).searchParams);
    check(fromUrl.code === query.code, 'the browser URL and the server disagree on the code');
    return { query: { ...query, code: `${query.code.slice(0, 6)}…` } };
  });

  const firstTokens = await step('redeem the code', async () => {
    const query = hits[0];
    const tokens = await redeem(issuer, query.code, redirectUri, first.verifier);
    const claims = checkIdToken(tokens.id_token, issuer, first.nonce);
    return { sub: claims.sub, nonce_ok: true, auth_time: claims.auth_time, scope: tokens.scope };
  });

  await step('sso without the login form', async () => {
    const second = authorizationRequest(issuer, redirectUri);
    const navigationsBefore = mainFrameUrls.length;
    const res = await page.goto(second.url);
    await page.waitForURL((u) => u.href.startsWith(`${redirectUri}?`));
    check(res && res.status() === 200, `the SSO request ended with ${res && res.status()}${await showing()}`);
    check(res.url().startsWith(`${redirectUri}?`), `the SSO request ended at ${res.url()}`);
    const shown = mainFrameUrls.slice(navigationsBefore);
    check(
      shown.length === 1 && shown[0].startsWith(`${redirectUri}?`),
      `the browser showed more than the callback: ${JSON.stringify(shown)}`,
    );
    check((await page.locator('input[name="password"]').count()) === 0, 'a password field is shown');
    check(hits.length === 2, `the callback was called ${hits.length} times, expected 2`);
    const query = hits[1];
    checkCallback(query, issuer, second.state);
    check(query.code !== hits[0].code, 'the SSO answer reused the first code');
    const tokens = await redeem(issuer, query.code, redirectUri, second.verifier);
    const claims = checkIdToken(tokens.id_token, issuer, second.nonce);
    check(
      claims.auth_time === firstTokens.auth_time,
      `auth_time changed from ${firstTokens.auth_time} to ${claims.auth_time}: not the same session`,
    );
    return { redirects: res.request().redirectedFrom() ? 'via /authorize' : 'none', sub: claims.sub };
  });

  await step('done', async () => undefined);
}

let timedOut = false;
const watchdog = setTimeout(async () => {
  timedOut = true;
  const message = `watchdog: no result within ${WATCHDOG_MS / 1000} s (step: ${currentStep})`;
  console.log(JSON.stringify({ step: currentStep, ok: false, error: message }));
  console.error(message);
  const forced = setTimeout(() => process.exit(1), 5000);
  forced.unref();
  await closeAll();
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

try {
  await main();
} catch (err) {
  // After the watchdog has fired, closing the browser makes main() fail too: already reported.
  if (timedOut) await new Promise(() => {});
  let message = err instanceof StepFailure ? err.message : `${err?.name}: ${err?.message}`;
  if (!(err instanceof StepFailure)) message += await showing();
  // Playwright's call logs carry terminal colours.
  message = message.replace(/\u001b\[[0-9;]*m/g, '');
  console.log(JSON.stringify({ step: currentStep, ok: false, error: message }));
  console.error(`browser_login.mjs failed at step "${currentStep}": ${message}`);
  if (!(err instanceof StepFailure) && err?.stack) console.error(err.stack.replace(/\u001b\[[0-9;]*m/g, ''));
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await closeAll();
}
