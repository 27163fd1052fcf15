// End-to-end test of the master dashboard in headless Chromium.
// Started by run.sh, which runs a real master and agents and passes:
//   BASE_URL    http://127.0.0.1:PORT
//   API_TOKEN   the master's API token
//   AGENT_UUID  the agent that reports every second (group "lab")
//   EVIL_UUID   a second agent whose group is HTML (escaping check)
//   EVIL_GROUP  that group
//   GONE_UUID   an agent that reported and stopped (offline, group "gone")
//   PUSH_TEXT   the message to push to AGENT_UUID
//   SCREENSHOT  where to save the screenshot (a narrow one goes next to it)
// Prints one "ok - ..." or "not ok - ..." line per check; run.sh counts them.

import { loadavg, cpus } from 'node:os';
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
const GONE_UUID = env('GONE_UUID');
const FLEET_N = Number(process.env.FLEET_N || 5000); // agents in the fleet-scale part: the real ones plus synthetic rows
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
// The master's API, straight from the test (not through the page).
async function api(path) {
  const r = await fetch(BASE + path, { headers: { Authorization: `Bearer ${TOKEN}` } });
  return { status: r.status, body: await r.json().catch(() => null) };
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

  const order = () => page.$$eval('#fleet-body tr[data-uuid]', (trs) => trs.map((t) => t.dataset.uuid).join(', '));
  await check('rows: problems first, then by uuid; a header click sorts', async () => {
    await page.waitForSelector(`#fleet-body tr[data-uuid="${EVIL_UUID}"]`);
    await page.waitForSelector(`#fleet-body tr[data-uuid="${GONE_UUID}"]`);
    let got = await order();
    assert(got === [GONE_UUID, UUID, EVIL_UUID].join(', '), `default order ${got}`);
    await page.click('#fleet th.uuid');
    got = await order();
    assert(got === [UUID, EVIL_UUID, GONE_UUID].join(', '), `by uuid: ${got}`);
    assert(await page.getAttribute('#fleet th.uuid', 'aria-sort') === 'ascending', 'no aria-sort');
    await page.click('#fleet th.uuid');
    got = await order();
    assert(got === [GONE_UUID, EVIL_UUID, UUID].join(', '), `by uuid, descending: ${got}`);
    await page.click('#fleet th.problems');
    return got;
  });

  // The real agents run on a busy test machine: their cpu may pass 90 %
  // and list them too, so the checks ask for the offline one and for
  // nothing without a problem.
  const listed = () => page.$$eval('#fleet-body tr[data-uuid]', (trs) => trs.map((t) => [t.dataset.uuid, t.querySelector('.problems').textContent]));
  await check('the problems view lists the offline agent, and only agents with problems', async () => {
    await page.click('#views [data-view=problems]');
    await page.waitForFunction(() => document.querySelector('#views [data-view=problems]').getAttribute('aria-pressed') === 'true');
    const rows = await listed();
    const gone = rows.find((r) => r[0] === GONE_UUID);
    assert(gone && gone[1] === 'offline', `rows ${JSON.stringify(rows)}`);
    assert(rows.every((r) => r[1] !== ''), `a row without a problem: ${JSON.stringify(rows)}`);
    await page.click('#views [data-view=offline]');
    await page.waitForFunction((u) => [...document.querySelectorAll('#fleet-body tr[data-uuid]')].map((t) => t.dataset.uuid).join() === u, GONE_UUID);
    const chip = await page.textContent('#views [data-view=offline]');
    assert(/\(1\)/.test(chip), `chip reads ${chip}`);
    await page.click('#views [data-view=all]');
    await page.waitForFunction(() => document.querySelectorAll('#fleet-body tr[data-uuid]').length === 3);
    return JSON.stringify(rows);
  });

  await check('search by uuid and by group', async () => {
    await page.fill('#search', 'DASH-1');
    await page.waitForFunction(() => document.querySelectorAll('#fleet-body tr[data-uuid]').length === 1);
    assert(await order() === UUID, `search dash-1: ${await order()}`);
    await page.fill('#search', 'gon');
    await page.waitForFunction(() => document.querySelectorAll('#fleet-body tr[data-uuid]').length === 1);
    assert(await order() === GONE_UUID, `search gon: ${await order()}`);
    await page.fill('#search', '');
    await page.waitForFunction(() => document.querySelectorAll('#fleet-body tr[data-uuid]').length === 3);
  });

  await check('group summaries count agents, online and problems', async () => {
    const rows = await page.$$eval('#groups-body tr', (trs) => trs.map((t) => [...t.children].map((c) => c.textContent)));
    const byName = Object.fromEntries(rows.map((r) => [r[0], r.slice(1).join('/')]));
    assert(byName.gone === '1/0/1', `gone: ${byName.gone} (${JSON.stringify(rows)})`);
    assert(/^1\/1\/[01]$/.test(byName.lab), `lab: ${byName.lab}`);
    assert(/^1\/1\/[01]$/.test(byName[EVIL_GROUP]), 'the HTML group is missing or escaped wrongly');
    await page.click('#groups-body tr[data-group="lab"]');
    await page.waitForFunction((u) => [...document.querySelectorAll('#fleet-body tr[data-uuid]')].map((t) => t.dataset.uuid).join() === u, UUID);
    await page.click('#group-filter button');
    await page.waitForFunction(() => document.querySelectorAll('#fleet-body tr[data-uuid]').length === 3);
    return rows.length + ' groups';
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
    assert(agents === '2 / 3', `agents online/known "${agents}"`);
    return `${agents}; ${(await page.textContent('#st-pushes')).trim()}; up ${(await page.textContent('#st-uptime')).trim()}`;
  });

  await check('push with an answer shows the hook\'s exit status and output', async () => {
    await page.selectOption('#push-to', UUID);
    await page.fill('#push-body', PUSH_TEXT); // the same text: run.sh checks the hook's file afterwards
    await page.check('#push-answer');
    await page.click('#push-send');
    await page.waitForFunction((old) => {
      const b = document.querySelector('#push-result [data-push-id]');
      return b && b.dataset.pushId !== old;
    }, pushId);
    const id = await page.getAttribute('#push-result [data-push-id]', 'data-push-id');
    const sel = `#push-result [data-push-id="${id}"] .answer[data-uuid="${UUID}"]`;
    await page.waitForSelector(sel, { timeout: 15_000 });
    const text = await page.textContent(sel);
    const bytes = Buffer.byteLength(PUSH_TEXT);
    assert(text.includes('exit 0') && text.includes(`hook got ${bytes} bytes`), `answer reads ${JSON.stringify(text)}`);
    await page.uncheck('#push-answer');
    return text.replace(/\s+/g, ' ').trim();
  });

  await check('detail panel: uptime, disks, custom metrics, report interval', async () => {
    await page.waitForSelector('#disks tbody tr');
    const info = await page.textContent('#info');
    assert(/host uptime/.test(info), 'no host uptime');
    assert(/report interval\s*[01]\.\d s/.test(info), `no measured interval in ${info.slice(0, 300)}`);
    const disks = await page.$$eval('#disks tbody tr', (trs) => trs.map((t) => t.firstChild.textContent));
    assert(disks.length >= 1, 'no mounts');
    await page.waitForSelector('#custom tbody tr', { timeout: 10_000 });
    const custom = await page.$$eval('#custom tbody tr', (trs) => trs.map((t) => [...t.children].map((c) => c.textContent).join('=')));
    assert(custom.includes('dash_test_metric=42'), `custom metrics ${custom}`);
    return `mounts ${disks.join(' ')}; ${custom.join(' ')}`;
  });

  await check('24 h range draws the one-minute history the API returns', async () => {
    const { body } = await api(`/api/agents/${UUID}`);
    assert(Array.isArray(body.history_long) && body.history_long.length >= 1, 'no history_long in the API');
    assert(body.history_long_bucket_ms === 60000, `bucket ${body.history_long_bucket_ms}`);
    await page.click('#range [data-range=long]');
    await page.waitForFunction(() => document.getElementById('chart-cpu').dataset.range === 'long');
    const pts = await page.$eval('#chart-cpu', (cv) => +cv.dataset.points);
    assert(pts >= 1 && Math.abs(pts - body.history_long.length) <= 1, `chart ${pts} points, API ${body.history_long.length}`);
    await page.click('#range [data-range=short]');
    await page.waitForFunction(() => +document.getElementById('chart-cpu').dataset.points > 3);
    return `${pts} minute(s)`;
  });

  await check('forget removes an offline agent after a confirmation', async () => {
    page.once('dialog', (d) => d.accept());
    await page.click(`#fleet-body tr[data-uuid="${GONE_UUID}"] td.uuid`);
    await page.waitForFunction((u) => document.getElementById('detail-uuid').textContent === u, GONE_UUID);
    assert(await page.isDisabled('#kick'), 'kick enabled for an offline agent');
    const resp = page.waitForResponse((r) => r.request().method() === 'DELETE');
    await page.click('#forget');
    const r = await resp;
    assert(r.status() === 200 && r.url().endsWith(`/api/agents/${GONE_UUID}?forget=1`), `DELETE ${r.url()} answered ${r.status()}`);
    await page.waitForSelector(`#fleet-body tr[data-uuid="${GONE_UUID}"]`, { state: 'detached' });
    assert((await api(`/api/agents/${GONE_UUID}`)).status === 404, 'the master still knows it');
    assert(await page.isHidden('#detail'), 'the detail panel stays open');
  });

  await check('kick closes a real agent\'s session after a confirmation', async () => {
    const before = (await api(`/api/agents/${UUID}`)).body.counters.sessions;
    let asked = '';
    page.once('dialog', (d) => { asked = d.message(); d.accept(); });
    await page.click(`#fleet-body tr[data-uuid="${UUID}"] td.uuid`);
    await page.waitForFunction(() => !document.getElementById('kick').disabled);
    const resp = page.waitForResponse((r) => r.request().method() === 'DELETE');
    await page.click('#kick');
    const r = await resp;
    assert(/Kick agent/.test(asked), `confirmation read ${asked}`);
    assert(r.status() === 200 && (await r.json()).kicked === true, `DELETE answered ${r.status()}`);
    // The agent is still running: it reconnects, a new session.
    const t0 = Date.now();
    let after = before;
    while (after <= before && Date.now() - t0 < 15_000) {
      await new Promise((res) => setTimeout(res, 200));
      after = (await api(`/api/agents/${UUID}`)).body.counters.sessions;
    }
    assert(after > before, `sessions still ${after}`);
    await page.waitForFunction((sel) => document.querySelector(sel + ' td.state').textContent === 'online', row, { timeout: 10_000 });
    return `sessions ${before} → ${after}`;
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

  // ---- fleet scale: the real master's /api/agents (dash-1, dash-2) plus
  // synthetic agents up to FLEET_N, added by intercepting that one
  // request; the rest of the API is the real master. A burst of health
  // events comes the same way, as an event stream the page parses.
  const now = Date.now();
  const synth = [];
  for (let i = 1; synth.length < FLEET_N - 2; i++) {
    const off = i % 20 === 0, evicted = i % 100 === 7, on = !off && !evicted, stale = on && i % 60 === 11;
    synth.push({
      uuid: 'sim-' + String(i).padStart(5, '0'), group: 'site-' + String(i % 50).padStart(2, '0'), online: on,
      address: on ? `10.0.${(i >> 8) & 255}.${i & 255}:4000` : null, wire: 'v2', sealed: true, software: 'edge-gw sim',
      connected_since_unix_ms: on ? now - 3_600_000 : null, last_seen_unix_ms: now - 1000, last_seen_ago_s: on ? 1 : 600,
      latest: { unix_ms: now - 1000, cpu: ((i * 37) % 1000) / 10, mem: ((i * 13) % 900) / 10, load1: (i % 400) / 100, rx_bps: i * 10, tx_bps: i * 3 },
      disk_used_max_pct: ((i * 7) % 950) / 10, interval_ms: 5000, last_report_ago_ms: stale ? 60_000 : 1000, pushes_queued: 0,
      counters: { sessions: 1, reports: 100 }, node: i % 2 ? 'master-a' : 'master-b',
      last_close: on ? null : { code: evicted ? 'evicted' : 'normal', reason: 'simulated', unix_ms: now - 600_000 },
    });
  }
  const fleetCtx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const fp = await fleetCtx.newPage();
  fp.setDefaultTimeout(20_000);
  const fleetErrors = [];
  fp.on('pageerror', (e) => fleetErrors.push(`page error: ${e.message}`));
  let realCount = -1;
  await fp.route('**/api/agents', async (route) => {
    const r = await route.fetch();
    const real = await r.json();
    realCount = real.length;
    await route.fulfill({ response: r, json: real.concat(synth) });
  });
  // As a cluster member answers (README, /api/cluster): the synthetic
  // agents name their master, and the masters panel lists both.
  await fp.route('**/api/cluster', (route) => route.fulfill({ json: {
    node: 'master-a', redis_up: true, redis_rtt_ms: 0.2, lease_ms: 5000, agents_elsewhere: FLEET_N / 2,
    nodes: [{ name: 'master-a', alive: true, agents: FLEET_N / 2, version: '0.1.0' }, { name: 'master-b', alive: true, agents: FLEET_N / 2, version: '0.1.0' }],
    counters: {},
  } }));
  let releaseBurst;
  const burstReady = new Promise((res) => { releaseBurst = res; });
  let eventsCalls = 0;
  await fp.route('**/api/events**', async (route) => {
    if (eventsCalls++ > 0) return; // later reconnects stay pending
    const body = await burstReady;
    await route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-store' }, body });
  });
  const cdp = await fleetCtx.newCDPSession(fp);
  await cdp.send('Performance.enable');
  const metrics = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
  const fleetRows = () => fp.$$eval('#fleet-body tr[data-uuid]', (trs) => trs.map((t) => t.dataset.uuid));
  const countText = () => fp.textContent('#fleet-count');
  const perf = {};

  await check(`${FLEET_N} agents: first render`, async () => {
    const m0 = await metrics();
    await fp.goto(`${BASE}/#token=${encodeURIComponent(TOKEN)}`);
    const h = await fp.waitForFunction((n) => document.querySelector('#fleet-body tr[data-uuid]')
      && new RegExp(` of ${n} online$`).test(document.getElementById('fleet-count').textContent) && performance.now(), FLEET_N);
    perf.firstRender = Math.round(await h.jsonValue());
    const m1 = await metrics();
    perf.loadTask = Math.round((m1.TaskDuration - m0.TaskDuration) * 1000);
    assert(realCount === 2, `the master listed ${realCount} agents, expected 2`);
    const rows = (await fleetRows()).length;
    assert(rows > 10 && rows < 120, `${rows} rows in the DOM for ${FLEET_N} agents`);
    assert(perf.firstRender < 10_000, `first render took ${perf.firstRender} ms`);
    return `first render ${perf.firstRender} ms after navigation, ${perf.loadTask} ms main-thread task time, ${rows} rows in the DOM`;
  });

  await check(`${FLEET_N} agents: search by uuid and by group`, async () => {
    await fp.fill('#search', 'sim-01234');
    await fp.waitForFunction(() => /^1 shown/.test(document.getElementById('fleet-count').textContent));
    assert((await fleetRows()).join() === 'sim-01234', `rows ${await fleetRows()}`);
    const n = synth.filter((a) => a.group === 'site-07').length;
    await fp.fill('#search', 'site-07');
    await fp.waitForFunction((k) => document.getElementById('fleet-count').textContent.startsWith(k + ' shown'), n);
    const groups = await fp.$$eval('#fleet-body tr[data-uuid] td.group', (tds) => tds.map((t) => t.textContent));
    assert(groups.length > 0 && groups.every((g) => g === 'site-07'), `groups ${[...new Set(groups)]}`);
    await fp.fill('#search', '');
    await fp.waitForFunction((k) => document.getElementById('fleet-count').textContent.startsWith(k + ' shown'), FLEET_N);
    return `${n} in site-07`;
  });

  await check(`${FLEET_N} agents in a cluster: the masters panel and the master column`, async () => {
    await fp.waitForSelector('#masters:not([hidden])');
    const masters = await fp.$$eval('#masters-body tr', (trs) => trs.map((t) => t.textContent));
    assert(masters.length === 2 && /master-a \(this one\)alive/.test(masters[0]) && /agents/.test(masters[1]), `masters ${masters}`);
    await fp.waitForFunction(() => !document.querySelector('#fleet th.node').hidden);
    await fp.fill('#search', 'master-b');
    const n = synth.filter((a) => a.node === 'master-b').length;
    await fp.waitForFunction((k) => document.getElementById('fleet-count').textContent.startsWith(k + ' shown'), n);
    const nodes = await fp.$$eval('#fleet-body tr[data-uuid] td.node', (tds) => [...new Set(tds.map((t) => t.hidden ? 'hidden' : t.textContent))]);
    assert(nodes.join() === 'master-b', `node cells ${nodes}`);
    await fp.fill('#search', '');
    return masters.join('; ');
  });

  await check(`${FLEET_N} agents: sort by cpu, both ways`, async () => {
    const cpus = () => fp.$$eval('#fleet-body tr[data-uuid] td.cpu', (tds) => tds.slice(0, 20).map((t) => parseFloat(t.textContent)));
    await fp.click('#fleet th.cpu');
    let v = await cpus();
    assert(v[0] >= 99.9 && v.every((x, i) => i === 0 || x <= v[i - 1]), `descending: ${v}`);
    await fp.click('#fleet th.cpu');
    v = await cpus();
    assert(v[0] === 0 && v.every((x, i) => i === 0 || x >= v[i - 1]), `ascending: ${v}`);
    return `first ${v.slice(0, 3).join(', ')}`;
  });

  await check(`${FLEET_N} agents: virtual scrolling shows the right rows`, async () => {
    await fp.click('#fleet th.uuid');
    const all = ['dash-1', 'dash-2', ...synth.map((a) => a.uuid)].sort();
    let worst = 0, total = 0;
    const parts = { ScriptDuration: 0, LayoutDuration: 0, RecalcStyleDuration: 0 };
    for (const at of [2500, 10, 4800, 1234, 3999]) {
      const m0 = await metrics();
      await fp.$eval('#fleet-scroll', (sc, y) => { sc.scrollTop = y; }, at * 30);
      await fp.waitForFunction((u) => document.querySelector(`#fleet-body tr[data-uuid="${u}"]`), all[at]);
      const m1 = await metrics();
      const ms = (m1.TaskDuration - m0.TaskDuration) * 1000;
      for (const k in parts) parts[k] += (m1[k] - m0[k]) * 200; // ms, averaged over the 5 jumps
      worst = Math.max(worst, ms);
      total += ms;
      const rows = await fleetRows();
      const i0 = all.indexOf(rows[0]);
      assert(rows.length < 120 && i0 >= 0 && rows.every((u, k) => all[i0 + k] === u), `at ${at}: rows ${rows.slice(0, 3)}… (${rows.length})`);
      // The row scrolled to is the first one under the header.
      const top = await fp.$eval(`#fleet-body tr[data-uuid="${all[at]}"]`, (tr) =>
        tr.getBoundingClientRect().top - document.querySelector('#fleet thead th').getBoundingClientRect().bottom);
      assert(Math.abs(top) <= 2, `row ${all[at]} is ${top} px below the header`);
    }
    perf.scroll = Math.round(total / 5);
    // The same calls without a jump: what the test driver itself costs.
    let base = 0;
    for (let k = 0; k < 5; k++) {
      const m0 = await metrics();
      await fp.$eval('#fleet-scroll', (sc) => { sc.scrollTop = sc.scrollTop; });
      await fp.waitForFunction((u) => document.querySelector(`#fleet-body tr[data-uuid="${u}"]`), all[3999]);
      base += ((await metrics()).TaskDuration - m0.TaskDuration) * 1000;
    }
    perf.scrollBase = Math.round(base / 5);
    // The very end: the last agent is the last row, fully in view.
    await fp.$eval('#fleet-scroll', (sc) => { sc.scrollTop = sc.scrollHeight; });
    await fp.waitForFunction((u) => document.querySelector(`#fleet-body tr[data-uuid="${u}"]`), all[all.length - 1]);
    const rows = await fleetRows();
    assert(rows[rows.length - 1] === all[all.length - 1], `last row ${rows[rows.length - 1]}`);
    const gap = await fp.$eval('#fleet-scroll', (sc) => sc.getBoundingClientRect().bottom
      - [...document.querySelectorAll('#fleet-body tr[data-uuid]')].pop().getBoundingClientRect().bottom);
    assert(gap >= -1 && gap < 40, `the last row ends ${gap} px above the box's bottom`);
    await fp.$eval('#fleet-scroll', (sc) => { sc.scrollTop = 0; });
    return `a jump costs ${perf.scroll} ms main-thread on average, ${Math.round(worst)} ms at worst; the same calls without a jump ${perf.scrollBase} ms; `
      + `of a jump: script ${Math.round(parts.ScriptDuration)} ms, layout ${Math.round(parts.LayoutDuration)} ms, style ${Math.round(parts.RecalcStyleDuration)} ms`;
  });

  await check(`${FLEET_N} agents: the problems views`, async () => {
    const off = synth.filter((a) => !a.online).length;
    const evicted = synth.filter((a) => a.last_close && a.last_close.code === 'evicted').length;
    const stale = synth.filter((a) => a.last_report_ago_ms > 3 * a.interval_ms).length;
    await fp.click('#views [data-view=offline]');
    await fp.waitForFunction((k) => document.getElementById('fleet-count').textContent.startsWith(k + ' shown'), off);
    const states = await fp.$$eval('#fleet-body tr[data-uuid] td.state', (tds) => [...new Set(tds.map((t) => t.textContent))]);
    assert(states.join() === 'offline', `states ${states}`);
    const chip = (v) => fp.$eval(`#views [data-view=${v}]`, (b) => +b.dataset.n);
    assert(await chip('evicted') === evicted, `evicted chip ${await chip('evicted')}, expected ${evicted}`);
    const st = await chip('stale');
    assert(st >= stale && st <= stale + 2, `stale chip ${st}, expected ${stale} (+ the real agents if late)`);
    await fp.click('#views [data-view=problems]');
    const probs = await fp.$$eval('#fleet-body tr[data-uuid] td.problems', (tds) => tds.map((t) => t.textContent));
    assert(probs.length > 0 && probs.every((p) => p), 'a row without a problem in the problems view');
    await fp.click('#views [data-view=all]');
    return `${off} offline (${evicted} evicted), ${st} stale, ${await chip('problems')} with problems`;
  });

  await check(`${FLEET_N} agents: group summaries`, async () => {
    const rows = await fp.$$eval('#groups-body tr', (trs) => trs.map((t) => [...t.children].map((c) => c.textContent)));
    assert(rows.length === 52, `${rows.length} groups (50 synthetic, lab and the HTML one)`);
    const g = synth.filter((a) => a.group === 'site-07');
    const r = rows.find((x) => x[0] === 'site-07');
    assert(r && +r[1] === g.length && +r[2] === g.filter((a) => a.online).length, `site-07: ${r}`);
    return `site-07: ${r.slice(1).join(' / ')}`;
  });

  await check('a burst of 1,000 health events costs little main-thread time', async () => {
    let body = '';
    for (let i = 2; i <= 1000; i++) {
      const u = 'sim-' + String(i).padStart(5, '0');
      body += `event: health\ndata: ${JSON.stringify({ uuid: u, point: { unix_ms: Date.now(), cpu: 50.5, mem: 20, load1: 0.5, rx_bps: 1, tx_bps: 1 } })}\n\n`;
    }
    body += `event: health\ndata: ${JSON.stringify({ uuid: 'sim-00001', point: { unix_ms: Date.now(), cpu: 77.7, mem: 20, load1: 0.5, rx_bps: 1, tx_bps: 1 } })}\n\n`;
    const m0 = await metrics();
    const t0 = Date.now();
    releaseBurst(body);
    await fp.waitForFunction(() => {
      const td = document.querySelector('#fleet-body tr[data-uuid="sim-00001"] td.cpu');
      return td && td.textContent === '77.7';
    });
    await fp.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const m1 = await metrics();
    perf.burstTask = Math.round((m1.TaskDuration - m0.TaskDuration) * 1000);
    perf.burstScript = Math.round((m1.ScriptDuration - m0.ScriptDuration) * 1000);
    perf.burstWall = Date.now() - t0;
    const cpu2 = await fp.textContent('#fleet-body tr[data-uuid="sim-00002"] td.cpu');
    assert(cpu2 === '50.5', `sim-00002 shows cpu ${cpu2}`);
    assert(perf.burstTask < 2000, `the burst took ${perf.burstTask} ms of main-thread time`);
    return `${perf.burstTask} ms main-thread task time (${perf.burstScript} ms script), shown after ${perf.burstWall} ms`;
  });

  await check('no script errors at fleet scale', async () => {
    assert(fleetErrors.length === 0, fleetErrors.join('; '));
  });
  console.log(`# perf (${FLEET_N} agents): first render ${perf.firstRender} ms, load main-thread ${perf.loadTask} ms, `
    + `scroll jump ${perf.scroll} ms (test driver alone ${perf.scrollBase} ms), 1,000 health events ${perf.burstTask} ms main-thread (${perf.burstScript} ms script); `
    + `machine: ${cpus().length} cores, load average ${loadavg()[0].toFixed(1)}`);
  await fp.click('#views [data-view=problems]');
  await fp.click('#fleet-body tr[data-uuid] td.uuid');
  await fp.waitForSelector('#detail:not([hidden])');
  await fp.screenshot({ path: SHOT.replace(/\.png$/, '-fleet.png'), fullPage: true });
  await fleetCtx.close();
} catch (e) {
  if (!String(e.message).startsWith('stopping:')) notOk('test run', e);
  else console.log(`# ${e.message}`);
} finally {
  await browser.close().catch(() => {});
}
if (pushId) console.log(`# push id ${pushId}`);
process.exit(failed ? 1 : 0);
