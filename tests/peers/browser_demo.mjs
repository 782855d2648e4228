// Browser check of `oidcgate demo`: a real headless Chromium (Debian's /usr/bin/chromium, driven
// by npm `playwright-core`) opens the gateway, is sent to the development IdP's login page, signs
// in as alice, lands on the sample app behind the gateway and sees her identity there, saves a
// full-page screenshot of that page, and signs out with the app's "Sign out" link.
//
// The demo's layout: the gateway on port N (argv[2]), the sample app on N+1, the IdP on N+2.
// Signing out goes gateway /logout → the IdP's end-session endpoint with alice's ID token as
// id_token_hint → (the IdP ends its session without asking, since the hint names it) the
// gateway's root → (no gateway session any more) the gateway's /login → the IdP's /authorize →
// (no IdP session any more) the login form. So the login form showing again proves both sessions are gone; the
// script also checks that the gateway refuses its old session cookie afterwards.
//
// Each step prints one JSON line `{"step": ..., "ok": true}`; the first failure prints
// `{"step": ..., "ok": false, "error": ...}`, a readable message on stderr, and exits 1. The
// browser is always closed; a watchdog ends everything after 60 s.
//
// Usage: node browser_demo.mjs http://127.0.0.1:N /path/to/screenshot.png

import { readFileSync } from 'node:fs';
import { chromium, request } from 'playwright-core';

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
const ALICE = { username: 'alice', password: 'wonderland', email: 'alice@example.com' };
const WATCHDOG_MS = 60_000;
const WAIT_MS = 15_000;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

class StepFailure extends Error {}

let currentStep = 'start';
let browser;
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

/** Whether `url` (a string) is `origin` + `path`, with or without a query. */
function at(url, origin, path) {
  const u = new URL(url);
  return u.origin === origin && u.pathname === path;
}

/** Checks that the IdP's login form is what the browser shows. */
async function checkLoginForm(idp) {
  check(at(page.url(), idp, '/authorize'), `expected the IdP's login page, got ${page.url()}${await showing()}`);
  check(await page.locator('input[name="username"]').isVisible(), `no username field${await showing()}`);
  check(await page.locator('input[name="password"]').isVisible(), `no password field${await showing()}`);
  check(await page.getByRole('button', { name: 'Sign in' }).isVisible(), `no "Sign in" button${await showing()}`);
}

/** The sample app's identity table as { header name: value }. */
async function identityTable() {
  const rows = await page.locator('table#identity tr').evaluateAll((trs) =>
    trs.map((tr) => [tr.querySelector('th')?.textContent ?? '', tr.querySelector('td')?.textContent ?? '']),
  );
  return Object.fromEntries(rows);
}

/** Clicks `locator` and waits until the main frame has committed a new document and loaded it. */
async function clickAndLand(locator) {
  await Promise.all([
    page.waitForEvent('framenavigated', { predicate: (f) => f === page.mainFrame() }),
    locator.click(),
  ]);
  await page.waitForLoadState('load');
}

async function closeAll() {
  const b = browser;
  browser = undefined;
  if (b) await b.close().catch(() => {});
}

async function main() {
  const gateway = process.argv[2];
  const screenshotPath = process.argv[3];
  if (!gateway || !/^https?:\/\/[^/]+$/.test(gateway) || !screenshotPath) {
    console.error('usage: node browser_demo.mjs http://127.0.0.1:N SCREENSHOT.png (the gateway, no trailing slash)');
    process.exit(2);
  }
  const gatewayUrl = new URL(gateway);
  const idp = `${gatewayUrl.protocol}//${gatewayUrl.hostname}:${Number(gatewayUrl.port) + 2}`;
  const home = `${gateway}/`;

  await step('launch chromium', async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30_000,
    });
    return { version: browser.version() };
  });

  // A new context is a fresh, empty profile (cookies included).
  const context = await browser.newContext({ javaScriptEnabled: true, viewport: { width: 1024, height: 640 } });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  page = await context.newPage();
  // Every main-frame document request, redirects included (each hop is its own request).
  const navigations = [];
  page.on('request', (r) => {
    if (r.isNavigationRequest() && r.frame() === page.mainFrame()) navigations.push(r.url());
  });

  await step('gateway sends to the login page', async () => {
    const res = await page.goto(home);
    check(res && res.status() === 200, `GET ${home} ended with ${res && res.status()}${await showing()}`);
    await checkLoginForm(idp);
    const query = new URL(page.url()).searchParams;
    check(query.get('client_id') === 'demo', `the authorization request has client_id ${query.get('client_id')}`);
    check(
      query.get('redirect_uri') === `${gateway}/auth/callback`,
      `the authorization request has redirect_uri ${query.get('redirect_uri')}`,
    );
    return { login_page: `${idp}/authorize`, title: await page.title() };
  });

  await step('sign in as alice', async () => {
    await page.locator('input[name="username"]').fill(ALICE.username);
    await page.locator('input[name="password"]').fill(ALICE.password);
    const [res] = await Promise.all([
      page.waitForResponse(
        (r) => r.request().isNavigationRequest() && r.url() === home && !(r.status() >= 300 && r.status() < 400),
      ),
      page.getByRole('button', { name: 'Sign in' }).click(),
    ]);
    await page.waitForLoadState('load');
    check(res.status() === 200, `the sample app page answered ${res.status()}${await showing()}`);
    check(page.url() === home, `after signing in the browser is at ${page.url()}, not ${home}${await showing()}`);
    return { at: page.url() };
  });

  await step('identity shown', async () => {
    const heading = (await page.locator('h1').innerText()).trim();
    check(heading === 'Hello, alice!', `the heading says ${JSON.stringify(heading)}${await showing()}`);
    const identity = await identityTable();
    const cells = Object.values(identity);
    check(cells.includes(ALICE.email), `the identity table lacks ${ALICE.email}: ${JSON.stringify(identity)}`);
    check(
      cells.some((v) => v.split(',').map((g) => g.trim()).includes('admins')),
      `the identity table lacks the group admins: ${JSON.stringify(identity)}`,
    );
    check(identity['x-auth-request-user'] === 'alice', `x-auth-request-user: ${JSON.stringify(identity)}`);
    check(identity['x-auth-request-email'] === ALICE.email, `x-auth-request-email: ${JSON.stringify(identity)}`);
    check(await page.getByRole('link', { name: 'Sign out' }).isVisible(), `no "Sign out" link${await showing()}`);
    return { heading, identity };
  });

  await step('screenshot', async () => {
    await page.screenshot({ path: screenshotPath, fullPage: true });
    const png = readFileSync(screenshotPath);
    check(png.subarray(0, 8).equals(PNG_SIGNATURE), `${screenshotPath} is not a PNG`);
    return { path: screenshotPath, bytes: png.length };
  });

  // The cookies as they were while signed in, to replay after signing out; first check that
  // they alone do open the app (so the replay below tests the sign-out, not a lost cookie).
  const signedInCookies = await context.cookies(home);
  await step('session cookie opens the app', async () => {
    const replay = await request.newContext({ storageState: { cookies: signedInCookies, origins: [] } });
    try {
      const res = await replay.get(home, { headers: { accept: 'text/html' }, maxRedirects: 0 });
      const body = await res.text();
      check(
        res.status() === 200 && body.includes('Hello, alice!'),
        `the signed-in cookies did not open the app: ${res.status()} ${body.replace(/\s+/g, ' ').slice(0, 200)}`,
      );
    } finally {
      await replay.dispose();
    }
    return { cookies: signedInCookies.map((c) => c.name) };
  });

  await step('sign out', async () => {
    navigations.length = 0;
    await clickAndLand(page.getByRole('link', { name: 'Sign out' }));
    const hops = navigations.map((u) => {
      const x = new URL(u);
      return `${x.origin}${x.pathname}`;
    });
    const endSession = navigations.find((u) => at(u, idp, '/logout'));
    check(endSession, `signing out never reached the IdP's ${idp}/logout: ${JSON.stringify(hops)}${await showing()}`);
    const hint = new URL(endSession).searchParams;
    check(hint.get('id_token_hint'), `the IdP's logout was called without id_token_hint: ${endSession}`);
    check(
      hint.get('post_logout_redirect_uri') === home,
      `post_logout_redirect_uri is ${hint.get('post_logout_redirect_uri')}, not ${home}`,
    );
    check(
      !at(page.url(), idp, '/logout'),
      `the IdP's logout did not sign out and redirect (confirmation or error page)${await showing()}`,
    );
    // The IdP redirected to the gateway's root, which had no session and sent the browser on to
    // the IdP, which had no session either and showed its login form.
    await checkLoginForm(idp);
    // gateway /logout → IdP /logout → gateway / → (the gateway's own hops, e.g. its /login) →
    // IdP /authorize, where the browser stays.
    const start = [`${gateway}/logout`, `${idp}/logout`, home];
    check(
      JSON.stringify(hops.slice(0, 3)) === JSON.stringify(start) &&
        hops.at(-1) === `${idp}/authorize` &&
        hops.slice(3, -1).every((h) => h.startsWith(`${gateway}/`)),
      `the sign-out went ${JSON.stringify(hops)}, expected ${JSON.stringify(start)}, then the gateway, ` +
        `then ${idp}/authorize`,
    );
    check((await page.getByText('Hello, alice!').count()) === 0, `the app page is still shown${await showing()}`);
    return { hops };
  });

  await step('signed out at the gateway', async () => {
    // A browser-like request (Accept: text/html) without a valid session is sent to sign in
    // (the gateway's /login or straight to the IdP), never served the app.
    const accept = { accept: 'text/html,application/xhtml+xml' };
    const sentToLogin = async (res, what) => {
      const location = res.headers()['location'] ?? '';
      const target = location ? new URL(location, home).toString() : '';
      check(
        res.status() >= 300 && res.status() < 400 && (at(target, gateway, '/login') || at(target, idp, '/authorize')),
        `${what}: GET ${home} answered ${res.status()} (location ${JSON.stringify(location)}): ` +
          `${(await res.text()).replace(/\s+/g, ' ').slice(0, 200)}`,
      );
      return target;
    };
    // This browser's cookies, as they are now.
    const now = await sentToLogin(
      await page.request.get(home, { headers: accept, maxRedirects: 0 }),
      'this browser after signing out',
    );
    // The session cookie from before signing out no longer opens the app either.
    const replay = await request.newContext({ storageState: { cookies: signedInCookies, origins: [] } });
    let old;
    try {
      old = await sentToLogin(
        await replay.get(home, { headers: accept, maxRedirects: 0 }),
        'the session cookie from before signing out still works',
      );
    } finally {
      await replay.dispose();
    }
    return { now, old_cookie: old };
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
  console.error(`browser_demo.mjs failed at step "${currentStep}": ${message}`);
  if (!(err instanceof StepFailure) && err?.stack) console.error(err.stack.replace(/\u001b\[[0-9;]*m/g, ''));
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await closeAll();
}
