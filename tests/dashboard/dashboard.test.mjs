// End-to-end test of the master dashboard in headless Chromium.
// Started by run.sh, which runs a real master and agents and passes:
//   BASE_URL    http://127.0.0.1:PORT
//   API_TOKEN   the master's API token
//   AGENT_UUID  the agent that reports every second (group "lab")
//   EVIL_UUID   a second agent whose group is HTML (escaping check)
//   EVIL_GROUP  that group
//   PUSH_TEXT   the message to push to AGENT_UUID
//   SCREENSHOT  where to save the screenshot (a narrow one goes next to it)
// Prints one "ok - ..." or "not ok - ..." line per check; run.sh counts them.

import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set (run tests/dashboard/run.sh)`);
  return v;
};
const BASE = env('BASE_URL');
const TOKEN = env('API_TOKEN');
const UUID = env('AGENT_UUID');
const EVIL_UUID = env('EVIL_UUID');
const EVIL_GROUP = env('EVIL_GROUP');
const PUSH_TEXT = env('PUSH_TEXT');
const SHOT = env('SCREENSHOT');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let failed = 0;
let pushId = null;
function ok(name) {
  console.log(`ok - ${name}`);
}
function notOk(name, err) {
  failed++;
  const msg = String(err && err.message ? err.message : err).split('\n').slice(0, 6).join('\n#   ');
  console.log(`not ok - ${name}\n#   ${msg}`);
}
// Runs one check; a failing `critical` check skips the rest.
async function check(name, fn, critical = false) {
  const t0 = Date.now();
  try {
    const extra = await fn();
    ok(`${name}${extra ? ` (${extra})` : ''} [${Date.now() - t0} ms]`);
    return true;
  } catch (e) {
    notOk(name, e);
    if (critical) throw new Error(`stopping: "${name}" failed`);
    return false;
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // playwright launches with a fresh temporary user-data-dir of its own
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  timeout: 30_000,
});

try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(15_000);
  const pageErrors = [];
  const foreign = [];
  page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });
  page.on('request', (r) => { if (!r.url().startsWith(BASE + '/') && !r.url().startsWith('data:')) foreign.push(r.url()); });

  await check('page loads with the token from the URL fragment', async () => {
    const resp = await page.goto(`${BASE}/#token=${encodeURIComponent(TOKEN)}`, { waitUntil: 'domcontentloaded' });
    assert(resp && resp.status() === 200, `GET / answered ${resp && resp.status()}`);
    await page.waitForFunction(() => /^\d+\.\d+/.test(document.getElementById('st-version').textContent));
    const hash = await page.evaluate(() => location.hash);
    assert(hash === '', `the token stayed in the address bar: ${hash}`);
    const stored = await page.evaluate(() => localStorage.getItem('edge-gw.token'));
    assert(stored === TOKEN, 'token not kept in localStorage');
    return `version ${await page.textContent('#st-version')}`;
  }, true);

  const row = `#fleet-body tr[data-uuid="${UUID}"]`;
  await check(`row ${UUID} shows plausible cpu and mem`, async () => {
    await page.waitForFunction((sel) => {
      const tr = document.querySelector(sel);
      if (!tr) return false;
      const v = (c) => tr.querySelector('td.' + c).textContent.trim();
      return /^\d+(\.\d+)?$/.test(v('cpu')) && /^\d+(\.\d+)?$/.test(v('mem'));
    }, row, { timeout: 20_000 });
    const cpu = parseFloat(await page.textContent(`${row} td.cpu`));
    const mem = parseFloat(await page.textContent(`${row} td.mem`));
    assert(cpu >= 0 && cpu <= 100, `cpu ${cpu} outside 0-100`);
    assert(mem > 0 && mem <= 100, `mem ${mem} outside (0, 100]`);
    return `cpu ${cpu} %, mem ${mem} %`;
  }, true);

  await check('row shows online state, group and wire', async () => {
    const cells = await page.$eval(row, (tr) => Object.fromEntries(
      [...tr.children].map((td) => [td.className, td.textContent.trim()])));
    assert(cells.state === 'online', `state is "${cells.state}"`);
    assert(cells.group === 'lab', `group is "${cells.group}"`);
    assert(cells.wire === 'v2 · sealed', `wire is "${cells.wire}"`);
    assert(/^127\.0\.0\.1:\d+$/.test(cells.address), `address is "${cells.address}"`);
    return `${cells.state}, ${cells.wire}`;
  });

  await check('rows are sorted by uuid', async () => {
    await page.waitForSelector(`#fleet-body tr[data-uuid="${EVIL_UUID}"]`);
    const uuids = await page.$$eval('#fleet-body tr', (trs) => trs.map((t) => t.dataset.uuid));
    const sorted = [...uuids].sort();
    assert(JSON.stringify(uuids) === JSON.stringify(sorted), `order ${uuids.join(', ')}`);
    return uuids.join(', ');
  });

  await check('live events update the row (SSE)', async () => {
    await page.waitForFunction(() => document.getElementById('live').dataset.s === 'live');
    // The agent reports every second: the "last seen" cell must stay fresh
    // and the health values must change without a full refresh.
    const before = await page.$eval(row, (tr) => tr.querySelector('td.cpu').textContent + '|' + tr.querySelector('td.load').textContent);
    await page.waitForFunction(([sel, b]) => {
      const tr = document.querySelector(sel);
      return tr.querySelector('td.cpu').textContent + '|' + tr.querySelector('td.load').textContent !== b;
    }, [row, before], { timeout: 10_000 }).catch(() => {}); // values may legitimately repeat
    const seen = await page.textContent(`${row} td.seen`);
    assert(/^[0-3]s ago$/.test(seen.trim()), `last seen "${seen}"`);
    return `last seen ${seen.trim()}`;
  });

  await check('uuids and groups from agents are escaped', async () => {
    const evil = `#fleet-body tr[data-uuid="${EVIL_UUID}"]`;
    await page.waitForFunction((sel) => document.querySelector(sel + ' td.state').textContent === 'online', evil);
    const group = await page.textContent(`${evil} td.group`);
    assert(group === EVIL_GROUP, `group cell shows ${JSON.stringify(group)}`);
    const injected = await page.evaluate(() => ({
      imgs: document.querySelectorAll('#fleet-body img, #push-to img, #info img').length,
      xss: window.__xss === 1,
    }));
    assert(!injected.xss && injected.imgs === 0, `markup was injected: ${JSON.stringify(injected)}`);
    const opt = await page.$$eval('#push-to option', (os) => os.map((o) => o.value));
    assert(opt.includes('group:' + EVIL_GROUP), 'the group is missing from the push targets');
  });

  await check('selecting the agent draws its charts', async () => {
    await page.click(`${row} td.uuid`);
    await page.waitForSelector('#detail:not([hidden])');
    assert((await page.textContent('#detail-uuid')) === UUID, 'wrong agent in the detail panel');
    await page.waitForFunction(() => +document.getElementById('chart-cpu').dataset.points >= 3, null, { timeout: 10_000 });
    // Count pixels in the CPU series colour (#2f7de1): the line and its fill.
    const px = await page.$eval('#chart-cpu', (cv) => {
      const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
      let line = 0, any = 0;
      for (let i = 0; i < d.length; i += 4) {
        if (d[i + 3] > 0) any++;
        if (d[i + 3] > 200 && Math.abs(d[i] - 0x2f) < 40 && Math.abs(d[i + 1] - 0x7d) < 40 && Math.abs(d[i + 2] - 0xe1) < 40) line++;
      }
      return { line, any, w: cv.width, h: cv.height, points: +cv.dataset.points };
    });
    assert(px.w > 100 && px.h > 50, `canvas is ${px.w}x${px.h}`);
    assert(px.line > 50, `only ${px.line} pixels in the cpu colour`);
    const netPoints = await page.$eval('#chart-net', (cv) => +cv.dataset.points);
    assert(netPoints >= 3, `net chart has ${netPoints} points`);
    // The history keeps growing from health events.
    const n = px.points;
    await page.waitForFunction((n0) => +document.getElementById('chart-cpu').dataset.points > n0, n, { timeout: 5_000 });
    return `${px.points} points, ${px.line} line pixels`;
  });

  await check('push form sends a push and shows it delivered', async () => {
    await page.selectOption('#push-to', UUID);
    await page.fill('#push-body', PUSH_TEXT);
    await page.click('#push-send');
    const box = await page.waitForSelector('#push-result [data-push-id]');
    pushId = await box.getAttribute('data-push-id');
    await page.waitForSelector(`#push-result [data-push-id="${pushId}"][data-state="delivered"]`, { timeout: 15_000 });
    const text = await page.textContent(`#push-result [data-push-id="${pushId}"]`);
    assert(text.includes('delivered'), `result reads "${text}"`);
    assert((await page.inputValue('#push-body')) === '', 'message box not cleared');
    return text.trim();
  });

  await check('push errors are shown', async () => {
    await page.selectOption('#push-to', UUID);
    await page.click('#push-send'); // empty body
    await page.waitForSelector('#push-result .err');
    return (await page.textContent('#push-result .err')).trim();
  });

  await check('header shows status counters', async () => {
    await page.waitForFunction(() => /[1-9]\d* delivered/.test(document.getElementById('st-pushes').textContent), null, { timeout: 8_000 });
    const agents = (await page.textContent('#st-agents')).trim();
    assert(agents === '2 / 2', `agents online/known "${agents}"`);
    return `${agents}; ${(await page.textContent('#st-pushes')).trim()}; up ${(await page.textContent('#st-uptime')).trim()}`;
  });

  await page.waitForTimeout(2500); // a few more chart points for the screenshot
  await page.screenshot({ path: SHOT, fullPage: true });
  await page.setViewportSize({ width: 400, height: 800 });
  await page.waitForTimeout(300);
  await page.screenshot({ path: SHOT.replace(/\.png$/, '-narrow.png'), fullPage: true });

  await check('narrow window does not overflow the page', async () => {
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(w <= 400, `page is ${w} px wide in a 400 px window`);
  });

  await check('no script errors and no foreign requests', async () => {
    assert(pageErrors.length === 0, pageErrors.join('; '));
    assert(foreign.length === 0, `requests outside the master: ${foreign.join(', ')}`);
  });

  await check('a wrong token asks for the token with a 401 message', async () => {
    const ctx2 = await browser.newContext();
    const p2 = await ctx2.newPage();
    p2.setDefaultTimeout(10_000);
    await p2.goto(`${BASE}/#token=wrong-token`);
    await p2.waitForSelector('#login:not([hidden])');
    await p2.waitForFunction(() => /401/.test(document.getElementById('alert').textContent));
    assert(await p2.isHidden('#app'), 'the app stays visible');
    // Entering the right token in the form connects.
    await p2.fill('#token-input', TOKEN);
    await p2.click('#login button');
    await p2.waitForSelector(`#fleet-body tr[data-uuid="${UUID}"]`);
    assert(await p2.isHidden('#alert'), 'the 401 message stays after a good token');
    await ctx2.close();
  });

  await check('no token asks for it', async () => {
    const ctx3 = await browser.newContext();
    const p3 = await ctx3.newPage();
    await p3.goto(`${BASE}/`);
    await p3.waitForSelector('#login:not([hidden])', { timeout: 5_000 });
    await ctx3.close();
  });
} catch (e) {
  if (!String(e.message).startsWith('stopping:')) notOk('test run', e);
  else console.log(`# ${e.message}`);
} finally {
  await browser.close().catch(() => {});
}
if (pushId) console.log(`# push id ${pushId}`);
process.exit(failed ? 1 : 0);
