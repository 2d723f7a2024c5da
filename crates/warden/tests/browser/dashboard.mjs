// The dashboard's story in a real browser (run by crates/warden/tests/it/dashboard.rs).
//
// Environment: WARDEN_URL, WARDEN_TOKEN, WARDEN_BAD (the thing that will misbehave),
// WARDEN_DEVICES (how many things the fleet has), WARDEN_SCREENSHOTS (folder for the PNGs),
// WARDEN_CHROMIUM (the browser), WARDEN_USER_DATA (a fresh profile folder).
//
// Protocol with the Rust side, one line each on stdout: `step ...` (progress), `misbehave` (make
// WARDEN_BAD misbehave now), `verified ID` (the violation the page marked TRUE_POSITIVE), and
// `ok` last. Any failure exits non-zero with the reason on stderr.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env('WARDEN_URL');
const token = env('WARDEN_TOKEN');
const bad = env('WARDEN_BAD');
const devices = Number(env('WARDEN_DEVICES'));
const shots = env('WARDEN_SCREENSHOTS');
mkdirSync(shots, { recursive: true });

const say = (line) => console.log(line);
const step = (what) => say(`step ${what}`);
const check = (ok, what) => { if (!ok) throw new Error(`check failed: ${what}`); };
const LIVE = 90_000; // an alarm needs a few report periods on a loaded machine

async function main() {
  const context = await chromium.launchPersistentContext(env('WARDEN_USER_DATA'), {
    executablePath: env('WARDEN_CHROMIUM'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  context.setDefaultTimeout(30_000);
  const errors = [];
  const watch = (page) => {
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
    page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()} for ${r.url()}`); });
  };
  const shot = async (page, name) => {
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    step(`screenshot ${name}.png`);
  };
  try {
    // Without a link: the sign-in form; a wrong token is refused with a message.
    const first = context.pages()[0] ?? await context.newPage();
    watch(first);
    const t0 = Date.now();
    await first.goto(`${url}/`);
    await first.locator('#sign-in').waitFor({ state: 'visible' });
    step(`sign-in form shown ${Date.now() - t0} ms after navigation started`);
    // Figures only (timing goals are not asserted in tests): first contentful paint and the
    // page's load, as the browser measured them.
    const timing = await first.evaluate(() => {
      const paint = performance.getEntriesByName('first-contentful-paint')[0];
      const nav = performance.getEntriesByType('navigation')[0];
      return { fcp: paint && Math.round(paint.startTime), load: nav && Math.round(nav.loadEventEnd) };
    });
    step(`figure first-contentful-paint ${timing.fcp} ms, load ${timing.load} ms`);
    await first.fill('#token', 'wdn_wrong');
    await first.click('#sign-in-form button[type=submit]');
    await first.locator('#sign-in-error', { hasText: 'not the API token' }).waitFor();
    await shot(first, 'sign-in');
    // The console error of that refused sign-in (a 403) is expected; start counting afresh.
    errors.length = 0;
    await first.close();

    // The sign-in link, as `warden demo` prints it, in a fresh tab.
    const page = await context.newPage();
    watch(page);
    const t1 = Date.now();
    await page.goto(`${url}/#token=${encodeURIComponent(token)}`);
    const rows = page.locator('#fleet-table tbody tr[data-thing]');
    await page.waitForFunction((n) => document.querySelectorAll('#fleet-table tbody tr[data-thing]').length === n, devices);
    step(`figure sign-in link to a filled fleet table ${Date.now() - t1} ms`);
    check(!page.url().includes(token), `the token left the address bar: ${page.url()}`);
    check(page.url().endsWith('#/fleet'), `the fleet view's address: ${page.url()}`);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'warden_session');
    check(session && session.httpOnly && session.sameSite === 'Strict', `session cookie: ${JSON.stringify(cookies)}`);
    check(session.value !== token, 'the cookie is not the token');
    check(await page.evaluate(() => !document.cookie.includes('warden_session')), 'the cookie is HttpOnly');
    await page.locator('#live', { hasText: 'Live' }).waitFor();
    check(await rows.count() === devices, 'every thing is listed');
    check(await page.locator('#fleet-table tbody tr[data-thing] .badge.ok', { hasText: 'Connected' }).count() === devices, 'every thing is connected');
    // Search filters the table.
    await page.fill('#fleet-search', bad);
    await page.waitForFunction(() => document.querySelectorAll('#fleet-table tbody tr[data-thing]').length === 1);
    await page.fill('#fleet-search', '');
    await page.waitForFunction((n) => document.querySelectorAll('#fleet-table tbody tr[data-thing]').length === n, devices);
    await shot(page, 'fleet');

    // From here on the page must never reload: a marker on window would be lost.
    await page.evaluate(() => { window.wardenNoReload = true; });

    // The device view: graphs that fill, then grow as reports arrive.
    await page.click(`#fleet-table a[href="#/things/${bad}"]`);
    await page.locator('section[data-loaded="true"]').waitFor();
    await page.waitForFunction(() => document.querySelectorAll('#device-charts .chart canvas').length >= 7);
    const latest = () => page.locator('.chart[data-metric="aws:all-bytes-out"] .legend').textContent();
    await page.waitForFunction(() => /latest \d/.test(document.querySelector('.chart[data-metric="aws:all-bytes-out"] .legend').textContent));
    check((await latest()).includes('alarm > 35000'), `the threshold is drawn: ${await latest()}`);
    const pointsBefore = await page.evaluate(() => document.querySelector('.chart[data-metric="aws:all-bytes-out"]').textContent);
    step(`device view ready: ${pointsBefore}`);
    const ports = await page.locator('#device-sets [data-metric="aws:listening-tcp-ports"]').textContent();
    check(!ports.includes('no data'), `the current listening ports are shown: ${ports}`);

    // The misbehaviour, and the alarm and quarantine it brings, live.
    say('misbehave');
    await page.locator('#badge-alarm.bad').waitFor({ timeout: LIVE });
    step('in alarm');
    await page.locator('.alarm-banner').first().waitFor();
    await page.locator('#badge-quarantined').waitFor({ timeout: LIVE });
    step('quarantined');
    await page.locator('#release').waitFor();
    // The violation period is shaded on the bytes-out graph.
    await page.waitForFunction(() => /violation period/.test(document.querySelector('.chart[data-metric="aws:all-bytes-out"] .legend').textContent));
    check(await page.evaluate(() => window.wardenNoReload === true), 'the page did not reload');
    await page.waitForTimeout(1500); // a few more live points on the graphs
    await shot(page, 'device');

    // The fleet shows it quarantined and in alarm.
    await page.click('#nav a[data-view="fleet"]');
    await page.locator(`#fleet-table tr.quarantined[data-thing="${bad}"]`).waitFor();
    check(await page.locator(`#fleet-table tr[data-thing="${bad}"] .badge.bad`, { hasText: 'Quarantined' }).count() === 1, 'quarantine badge');
    await page.locator('#stat-quarantined b', { hasText: '1' }).waitFor();
    await shot(page, 'fleet-quarantined');

    // Violations: the active one, marked a true positive from the page.
    await page.click('#nav a[data-view="violations"]');
    const row = page.locator('#active-table tbody tr', { hasText: bad }).first();
    await row.waitFor();
    const violation = await row.getAttribute('data-violation');
    await row.locator('select').selectOption('TRUE_POSITIVE');
    await row.locator('button.set-state').click();
    await page.locator('.status', { hasText: 'marked TRUE_POSITIVE' }).waitFor();
    await page.locator('#history-table tbody tr', { hasText: 'in-alarm' }).first().waitFor();
    say(`verified ${violation}`);
    await shot(page, 'violations');

    // Security profiles: the behavior as a rule, targets, alerts, mitigation.
    await page.click('#nav a[data-view="profiles"]');
    const profile = page.locator('[data-profile="OutboundBytesSecProfile"]');
    await profile.locator('li', { hasText: 'OutboundBytesBehavior: alarm when aws:all-bytes-out > 35000 over 5m' }).waitFor();
    check((await profile.textContent()).includes('all things'), 'the target is shown');
    check((await profile.textContent()).includes('QuarantineAction'), 'the automatic mitigation is shown');
    await page.locator('#alert-topics td', { hasText: 'DDD_Alerts' }).waitFor();
    await shot(page, 'profiles');

    // Release from quarantine, with confirmation.
    await page.evaluate((thing) => { location.hash = `#/things/${thing}`; }, bad);
    await page.locator('#release').click();
    await page.locator('#confirm[open]').waitFor();
    await page.locator('#confirm-ok').click();
    await page.locator('#badge-quarantined').waitFor({ state: 'detached' });
    step('released');
    check(await page.evaluate(() => window.wardenNoReload === true), 'the page did not reload');

    // Deactivating another device's certificate, after a cancelled first try: its sessions end
    // at once, and the page shows it offline.
    const other = env('WARDEN_OTHER');
    await page.evaluate((thing) => { location.hash = `#/things/${thing}`; }, other);
    await page.locator('#badge-connection.ok').waitFor();
    await page.locator('button.deactivate').click();
    await page.locator('#confirm[open]').waitFor();
    await page.locator('#confirm button[value="cancel"]').click();
    await page.waitForTimeout(300);
    check(await page.locator('#device-info .badge', { hasText: 'INACTIVE' }).count() === 0, 'cancel changes nothing');
    await page.locator('button.deactivate').click();
    await page.locator('#confirm-ok').click();
    await page.locator('#device-info .badge', { hasText: 'INACTIVE' }).waitFor();
    await page.locator('#badge-connection.off').waitFor({ timeout: LIVE });
    say(`deactivated ${other}`);

    // A narrow screen: one column, nothing cut off.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.click('#nav a[data-view="fleet"]');
    await page.waitForFunction((n) => document.querySelectorAll('#fleet-table tbody tr[data-thing]').length === n, devices);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `the page scrolls sideways by ${overflow}px on a narrow screen`);
    await shot(page, 'narrow');
    await page.click(`#fleet-table a[href="#/things/${bad}"]`);
    await page.locator('section[data-loaded="true"]').waitFor();
    await page.waitForTimeout(500); // the charts follow their boxes' new width
    const deviceOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(deviceOverflow <= 0, `the device view scrolls sideways by ${deviceOverflow}px on a narrow screen`);
    await shot(page, 'narrow-device');
    await page.setViewportSize({ width: 1280, height: 900 });

    // Keyboard: the skip link comes first, appears when focused, with a visible focus ring.
    await page.locator('header .brand').focus();
    await page.keyboard.press('Shift+Tab');
    const focus = await page.evaluate(() => {
      const el = document.activeElement;
      return { cls: el.className, left: el.getBoundingClientRect().left, outline: getComputedStyle(el).outlineStyle };
    });
    check(focus.cls === 'skip' && focus.left >= 0 && focus.outline === 'solid', `keyboard focus: ${JSON.stringify(focus)}`);

    // Sign-out ends the session: the form is back and the API refuses the old cookie.
    await page.click('#sign-out');
    await page.locator('#sign-in').waitFor({ state: 'visible' });
    const status = await page.evaluate(async () => (await fetch('/warden/fleet')).status);
    check(status === 401 || status === 403, `the API after sign-out answers ${status}`);
    // Nothing the signed-out page had scheduled (a live event's refetch) may still call the API.
    await page.waitForTimeout(1000);

    // The one refusal expected: the fetch above, after sign-out.
    const unexpected = errors.filter((e) => !/status of 40[13]/.test(e) && !/^HTTP 40[13] for .*\/warden\/fleet$/.test(e));
    check(unexpected.length === 0, `errors in the page: ${unexpected.join('; ')}`);
    say('ok');
  } finally {
    await context.close();
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
