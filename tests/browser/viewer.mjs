// End-to-end test of the history viewer (src/web/viewer.html) against a running axum_blog example.
// Run by .ci/browser-test, which starts the app. By hand:
//   cargo run --example axum_blog --features axum &   # listens on 127.0.0.1:3000
//   (cd tests/browser && npm ci) && BASE_URL=http://127.0.0.1:3000 node tests/browser/viewer.mjs
// Env: BASE_URL (default http://127.0.0.1:3000), SCREENSHOT (default target/browser/viewer.png,
// relative to the working directory), CHROMIUM (default /usr/bin/chromium), TEST_TIMEOUT_MS (default 120000).
// The app must be fresh (empty log): the test counts entries.
import { chromium } from 'playwright-core';
import fs from 'node:fs/promises';
import path from 'node:path';

const BASE_URL = (process.env.BASE_URL || 'http://127.0.0.1:3000').replace(/\/+$/, '');
const SCREENSHOT = path.resolve(process.env.SCREENSHOT || 'target/browser/viewer.png');
const FAILURE_SHOT = SCREENSHOT.replace(/(\.png)?$/, '-failure.png');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = Number(process.env.TEST_TIMEOUT_MS || 120000);
const XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';

let step = 'start';
const t0 = Date.now();
function begin(name) { step = name; console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${name}`); }
class Failure extends Error {}
function check(cond, message) { if (!cond) throw new Failure(message); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const overall = setTimeout(() => {
  console.error(`FAIL: overall timeout of ${TIMEOUT_MS} ms exceeded during step "${step}"`);
  process.exit(2);
}, TIMEOUT_MS);

// ---- HTTP helpers (Node's fetch) ----
async function call(method, url, { token, body } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(BASE_URL + url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new Failure(`${method} ${url}: could not reach the app at ${BASE_URL} (${e.cause?.message || e.message})`);
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  return { status: res.status, json, text };
}
async function expect(method, url, status, opts) {
  const r = await call(method, url, opts);
  check(r.status === status, `${method} ${url}: expected HTTP ${status}, got ${r.status}: ${r.text.slice(0, 300)}`);
  return r.json;
}
async function login(username, password) {
  const j = await expect('POST', '/login', 200, { body: { username, password } });
  check(j && typeof j.access === 'string' && j.access, `POST /login as ${username}: no "access" token in ${JSON.stringify(j)}`);
  return j.access;
}

// ---- Page helpers ----
const FILTER_IDS = ['entity_type', 'object_id', 'actor', 'tool', 'action', 'status', 'created_after', 'created_before', 'limit'];

async function settled(page, sel) {
  await page.waitForFunction((s) => ['loaded', 'error'].includes(document.querySelector(s)?.dataset.state), sel);
  return page.$eval(sel, (e) => e.dataset.state);
}
// Sets the scope and every filter (missing ones emptied), clicks Apply, waits for the table.
async function applyFilters(page, scope, filters = {}) {
  await page.selectOption('#scope', scope); // applies at once; the explicit Apply below supersedes it
  for (const k of FILTER_IDS) {
    if (k === 'actor' && scope === 'me') continue; // disabled in "My history"
    if (k === 'status') await page.selectOption('#f-status', filters.status || '');
    else await page.fill(`#f-${k}`, filters[k] || '');
  }
  await page.click('#apply');
  return settled(page, '#results');
}
async function setToken(page, token) { await page.fill('#token', token); }
function rows(page) {
  return page.$$eval('#results tbody tr.entry', (trs) => trs.map((tr) => ({
    id: Number(tr.dataset.id),
    action: tr.dataset.action,
    entityType: tr.dataset.entityType,
    objectId: tr.dataset.objectId,
    actor: tr.querySelector('td.actor').textContent.trim(),
    status: tr.querySelector('td.status').textContent.trim(),
    time: tr.querySelector('td.time').textContent.trim(),
    message: tr.querySelector('td.message').textContent.trim(),
    hasLink: !!tr.querySelector('td.object-id a.object-link'),
  })));
}
function errorBanner(page) {
  return page.$eval('#error', (e) => (e.hidden ? null : { text: e.textContent.trim(), status: e.dataset.status, parameter: e.dataset.parameter }));
}
async function noError(page, what) {
  const err = await errorBanner(page);
  check(err === null, `${what}: unexpected error banner: ${err && err.text}`);
}
const summary = (rs) => rs.map((r) => `#${r.id} ${r.action} ${r.entityType}/${r.objectId} by ${r.actor}`).join('; ');
const tally = (xs) => xs.reduce((m, x) => ({ ...m, [x]: (m[x] || 0) + 1 }), {});

async function main() {
  await fs.rm(FAILURE_SHOT, { force: true });
  // 1. Writes over HTTP.
  begin('1. writes over HTTP as alice');
  await expect('GET', '/health', 200);
  const alice = await login('alice', 'alice-password');
  const p1 = await expect('POST', '/posts', 201, { token: alice, body: { title: 'Hello', body: 'First post' } });
  const p2 = await expect('POST', '/posts', 201, { token: alice, body: { title: 'Second', body: 'To be deleted' } });
  check(p1 && p1.id != null && p2 && p2.id != null, `POST /posts did not return posts with ids: ${JSON.stringify([p1, p2])}`);
  const upd = await expect('PATCH', `/posts/${p1.id}`, 200, { token: alice, body: { title: 'Hello, audit' } });
  check(upd && upd.title === 'Hello, audit', `PATCH /posts/${p1.id} returned ${JSON.stringify(upd)}`);
  await expect('DELETE', `/posts/${p2.id}`, 204, { token: alice });
  await expect('POST', '/login', 401, { body: { username: 'alice', password: 'wrong-password' } });
  const direct = await expect('GET', '/audit/entries?entity_type=post', 200, { token: alice });
  check(direct.count === 4, `server precondition: GET /audit/entries?entity_type=post says count ${direct.count}, expected 4 (is the app fresh?)`);
  const [id1, id2] = [String(p1.id), String(p2.id)];

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  const console_ = [];
  const pageErrors = [];
  const foreign = [];
  let page;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    page.setDefaultTimeout(15000);
    const origin = new URL(BASE_URL).origin;
    page.on('console', (m) => console_.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => pageErrors.push(String(e && e.stack || e)));
    page.on('request', (r) => { const u = r.url(); if (!u.startsWith(origin + '/') && !u.startsWith('data:') && !u.startsWith('about:')) foreign.push(u); });
    page.on('dialog', (d) => { pageErrors.push(`unexpected dialog: ${d.message()}`); d.dismiss().catch(() => {}); });

    // 2. The list, as alice, filtered to posts.
    begin('2. list of post entries as alice');
    const resp = await page.goto(`${BASE_URL}/audit/viewer`);
    check(resp && resp.status() === 200, `GET /audit/viewer: HTTP ${resp && resp.status()}`);
    await settled(page, '#results'); // the first load has no token: a 401 banner is expected, not checked
    await setToken(page, alice);
    check(await applyFilters(page, 'all', { entity_type: 'post' }) === 'loaded', `entity_type=post as alice: ${JSON.stringify(await errorBanner(page))}`);
    await noError(page, 'entity_type=post as alice');
    let rs = await rows(page);
    check(rs.length === 4, `expected 4 post entries in the table, got ${rs.length}: ${summary(rs)}`);
    check(rs.every((r) => r.entityType === 'post'), `non-post rows with entity_type=post: ${summary(rs)}`);
    const byAction = tally(rs.map((r) => r.action));
    check(byAction.create === 2 && byAction.update === 1 && byAction.delete === 1, `expected actions create x2, update, delete; got ${summary(rs)}`);
    const acts = tally(rs.map((r) => `${r.action}:${r.objectId}`));
    for (const k of [`create:${id1}`, `create:${id2}`, `update:${id1}`, `delete:${id2}`]) check(acts[k] === 1, `expected one "${k}" row; got ${summary(rs)}`);
    check(rs.every((r) => r.actor === 'alice'), `expected every post entry by alice; got ${summary(rs)}`);
    check(rs.every((r, i) => i === 0 || rs[i - 1].id > r.id), `expected newest first (ids descending); got ${summary(rs)}`);
    check(rs.every((r) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/.test(r.time)), `times not shown as UTC: ${rs.map((r) => r.time)}`);
    check(rs.every((r) => r.hasLink), 'every row should have an a.object-link');
    const count = await page.$eval('#count', (e) => ({ n: e.dataset.count, text: e.textContent }));
    check(count.n === '4' && /\b4\b/.test(count.text), `#count should say 4, says "${count.text}" (data-count ${count.n})`);
    // The filter is in the URL: a reload (token from sessionStorage) shows the same view.
    check(/entity_type=post/.test(page.url()), `filters are not in the page URL: ${page.url()}`);
    await page.reload();
    await settled(page, '#results');
    await noError(page, 'reload of the filtered view');
    check(await page.inputValue('#token') === alice, 'the token did not survive a reload (sessionStorage)');
    check(await page.inputValue('#f-entity_type') === 'post', 'the entity_type filter did not survive a reload');
    check((await rows(page)).length === 4, 'the filtered view did not survive a reload');
    // Details of the update row: its change inline.
    await page.click(`#results tbody tr.entry[data-action="update"] button.toggle`);
    const detail = await page.$eval('#results tbody tr.entry[data-action="update"] + tr.detail', (tr) => tr.querySelector('.change-row[data-field="title"] .new')?.textContent);
    check(detail === 'Hello, audit', `the update row's details should show the new title, show ${JSON.stringify(detail)}`);

    // 2b. API-activity entries show method, path and status code (written asynchronously: poll).
    begin('2b. API-activity entries (up to 10 s)');
    let apiRow;
    for (const deadline = Date.now() + 10000; ;) {
      check(await applyFilters(page, 'all', { entity_type: 'api' }) === 'loaded', `entity_type=api as alice: ${JSON.stringify(await errorBanner(page))}`);
      apiRow = (await rows(page)).find((r) => /^POST \/posts\b.*\b201\b/.test(r.message));
      if (apiRow || Date.now() > deadline) break;
      await sleep(500);
    }
    check(apiRow, `no API entry showing "POST /posts ... 201" after 10 s; rows: ${(await rows(page)).map((r) => r.message).join(' | ')}`);

    // 3. The first post's timeline.
    begin('3. timeline of the first post');
    await applyFilters(page, 'all', { entity_type: 'post' });
    await page.click(`#results tbody tr.entry[data-action="create"][data-object-id="${id1}"] a.object-link`);
    await page.waitForSelector('#timeline', { state: 'visible' });
    check(await settled(page, '#timeline') === 'loaded', `timeline of post ${id1}: ${JSON.stringify(await errorBanner(page))}`);
    await noError(page, `timeline of post ${id1}`);
    check(await page.isHidden('#list'), 'the list should be hidden while the timeline is shown');
    const tl = await page.$$eval('#timeline .entry', (arts) => arts.map((a) => ({
      id: Number(a.dataset.id),
      action: a.dataset.action,
      actor: a.querySelector('.actor')?.textContent.trim(),
      time: a.querySelector('.time')?.textContent.trim(),
      rows: [...a.querySelectorAll('.change-row')].map((r) => {
        const old = r.querySelector('.old'), neu = r.querySelector('.new');
        const bg = (e) => e && getComputedStyle(e).backgroundColor;
        return { field: r.querySelector('.field')?.textContent, old: old && old.textContent, neu: neu && neu.textContent,
          oldClass: old && old.className, newClass: neu && neu.className, oldBg: bg(old), newBg: bg(neu) };
      }),
    })));
    const tlSummary = JSON.stringify(tl.map((e) => `${e.action}#${e.id}`));
    check(tl.length === 2 && tl[0].action === 'update' && tl[1].action === 'create', `timeline should be [update, create], is ${tlSummary}`);
    check(tl[0].id > tl[1].id, `timeline should be newest first: ${tlSummary}`);
    check(tl.every((e) => e.actor === 'alice' && e.time), `timeline entries should show actor alice and a time: ${JSON.stringify(tl.map((e) => [e.actor, e.time]))}`);
    const title = tl[0].rows.find((r) => r.field === 'title');
    check(title, `the update has no change row for "title": ${JSON.stringify(tl[0].rows)}`);
    check(title.old === 'Hello' && title.neu === 'Hello, audit', `update title: old ${JSON.stringify(title.old)}, new ${JSON.stringify(title.neu)}; expected "Hello" -> "Hello, audit"`);
    check(/\bremoved\b/.test(title.oldClass) && /\badded\b/.test(title.newClass), `highlight classes: old "${title.oldClass}", new "${title.newClass}"`);
    const rgb = (s) => (s.match(/\d+(\.\d+)?/g) || []).map(Number);
    const [or, og, , oa = 1] = rgb(title.oldBg), [nr, ng, , na = 1] = rgb(title.newBg);
    check(oa > 0 && or > og, `the old value should have a red background, has ${title.oldBg}`);
    check(na > 0 && ng > nr, `the new value should have a green background, has ${title.newBg}`);
    const created = tl[1].rows.find((r) => r.field === 'title');
    check(created && created.neu === 'Hello' && created.old === null, `the create should show only the new title "Hello": ${JSON.stringify(tl[1].rows)}`);
    check(tl[1].rows.every((r) => r.old === null), 'the create should have no old-value cells');
    check(/obj_id=/.test(page.url()), `the timeline is not in the page URL: ${page.url()}`);

    // 5. Screenshot of the timeline.
    begin(`5. screenshot to ${SCREENSHOT}`);
    await fs.mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    await page.click('#back');
    await page.waitForSelector('#list', { state: 'visible' });
    check((await rows(page)).length === 4, 'Back should show the post list again');

    // 4. Bob: his own history only; the whole log is forbidden.
    begin('4. bob: My history, and All entries forbidden');
    const bob = await login('bob', 'bob-password');
    const bobPost = await expect('POST', '/posts', 201, { token: bob, body: { title: XSS, body: '<b>bold</b> & "quotes"' } });
    const forbidden = await call('GET', '/audit/entries', { token: bob });
    check(forbidden.status === 403, `GET /audit/entries as bob should be 403, is ${forbidden.status}: ${forbidden.text.slice(0, 200)}`);
    await setToken(page, bob);
    check(await applyFilters(page, 'me') === 'loaded', `My history as bob: ${JSON.stringify(await errorBanner(page))}`);
    await noError(page, 'My history as bob');
    check(await page.isDisabled('#f-actor'), 'the actor filter should be disabled in My history');
    rs = await rows(page);
    check(rs.length > 0, 'My history as bob is empty');
    check(rs.every((r) => r.actor === 'bob'), `My history as bob shows others' entries: ${summary(rs)}`);
    check(rs.some((r) => r.entityType === 'post' && r.action === 'create' && r.objectId === String(bobPost.id)), `My history as bob lacks his post's create: ${summary(rs)}`);
    check(/scope=me/.test(page.url()), `the scope is not in the page URL: ${page.url()}`);
    await applyFilters(page, 'all');
    const err = await errorBanner(page);
    check(err && err.status === '403', `All entries as bob should show a 403 banner, shows ${JSON.stringify(err)}`);
    const serverMsg = forbidden.json && forbidden.json.error;
    check(!serverMsg || err.text.includes(serverMsg), `the 403 banner should quote the server's message "${serverMsg}": ${err.text}`);
    check((await rows(page)).length === 0, 'no rows should remain visible after the 403');

    // Escaping: bob's post title (HTML) is shown as text in its timeline, opened as alice.
    begin('escaping of logged data');
    await setToken(page, alice);
    await applyFilters(page, 'all', { entity_type: 'post', object_id: String(bobPost.id) });
    await noError(page, 'bob\'s post as alice');
    await page.click('#results tbody tr.entry a.object-link');
    await page.waitForSelector('#timeline', { state: 'visible' });
    await settled(page, '#timeline');
    const shown = await page.$eval('#timeline .change-row[data-field="title"] .new', (e) => e.textContent).catch(() => null);
    check(shown === XSS, `bob's title should be shown as text ${JSON.stringify(XSS)}, shown ${JSON.stringify(shown)}`);
    check(await page.$$eval('#timeline img, #timeline script, #timeline b', (x) => x.length) === 0, 'logged HTML was inserted as markup');
    check(await page.evaluate(() => window.__xss) === undefined, 'logged HTML ran a script');

    check(pageErrors.length === 0, `JavaScript errors in the page:\n${pageErrors.join('\n')}`);
    check(foreign.length === 0, `the page requested other origins (it must work offline): ${foreign.join(', ')}`);
  } catch (e) {
    if (page) {
      await fs.mkdir(path.dirname(FAILURE_SHOT), { recursive: true }).catch(() => {});
      await page.screenshot({ path: FAILURE_SHOT, fullPage: true }).then(() => console.error(`screenshot of the failure: ${FAILURE_SHOT}`)).catch(() => {});
    }
    if (console_.length) console.error(`browser console:\n  ${console_.join('\n  ')}`);
    if (pageErrors.length) console.error(`page errors:\n  ${pageErrors.join('\n  ')}`);
    throw e;
  } finally {
    await browser.close().catch(() => {});
  }
}

main().then(() => {
  clearTimeout(overall);
  console.log(`PASS: history viewer end-to-end (${((Date.now() - t0) / 1000).toFixed(1)}s); screenshot ${SCREENSHOT}`);
}, (e) => {
  clearTimeout(overall);
  console.error(`FAIL during step "${step}": ${e instanceof Failure ? e.message : (e && e.stack) || e}`);
  process.exit(1);
});
