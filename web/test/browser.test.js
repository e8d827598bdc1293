// The demo page in a real browser: Debian's Chromium driven by
// playwright-core (which never downloads a browser), against the
// spacerelay binary on its embedded demo Space. Screenshots go to
// web/test/artifacts/.
//
// Without Chromium the test skips and says what is missing; under CI=true
// it fails instead.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { connect } from "../spacerelay.js";
import { startRelay, metric, waitFor, withTimeout } from "../testing/relay.js";

const CHROMIUM = process.env.SPACERELAY_CHROMIUM || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), "artifacts");
const STEP = 15_000; // bound of each wait in the page

/** playwright-core's chromium, or why it cannot run here. */
async function browserType() {
  if (!existsSync(CHROMIUM)) return { missing: `no Chromium at ${CHROMIUM} (Debian: apt-get install chromium)` };
  try {
    return { chromium: (await import("playwright-core")).chromium };
  } catch (err) {
    return { missing: `playwright-core is not installed (run npm ci in web/): ${err.message}` };
  }
}

test("the demo page: queue, progress, image, cancel, quota countdown, and the session's end", { timeout: 120_000 }, async (t) => {
  const { chromium, missing } = await browserType();
  if (missing) {
    if (process.env.CI === "true") assert.fail(`browser test under CI=true: ${missing}`);
    t.diagnostic(`SKIPPED: ${missing}`);
    t.skip(missing);
    return;
  }
  mkdirSync(ARTIFACTS, { recursive: true });
  let relay = await startRelay();
  let browser;
  let blocker;
  try {
    browser = await withTimeout(chromium.launch({ executablePath: CHROMIUM, args: ARGS }), 30_000, "Chromium to start");
    const context = await browser.newContext({ viewport: { width: 1200, height: 900 }, colorScheme: "light" });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP);
    const problems = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));

    const res = await page.goto(relay.url + "/");
    assert.equal(res.status(), 200, "GET / serves index.html (cmd/spacerelay: Static = web.FS)");
    await page.waitForSelector('#conn[data-state="open"]');
    assert.equal(await metric(relay, "spacerelay_sessions_open"), 1);
    assert.equal(await page.inputValue("#endpoint"), "/generate");
    assert.equal(await page.inputValue("#in-steps"), "8", "the form is built from hello, with the defaults");

    // Another visitor's two jobs run first, so the page's job waits in the queue.
    blocker = await connect(relay.wsURL, { WebSocket: withToken("blocker") });
    const blockers = [1, 2].map((i) => blocker.submit("/generate", { prompt: `blocker ${i}`, steps: 10 }));
    // (They may reach the upstream queue in either order.)
    await waitFor(() => blockers.some((b) => b.status === "started") && blockers.some((b) => b.status === "queued"),
      STEP, "one blocker to run and the other to wait");

    await record(page);
    await page.fill("#prompt", "a red fox in fresh snow");
    await page.fill("#in-steps", "12");
    await page.click("#generate");
    await page.waitForFunction(() => Number(document.querySelector("#progress").getAttribute("aria-valuenow")) >= 25);
    await page.screenshot({ path: join(ARTIFACTS, "page-running.png") });
    await page.waitForFunction(() => {
      const img = document.querySelector("#gallery img");
      return img && img.complete && img.naturalWidth > 0;
    });
    const seen = await page.evaluate(() => window.__seen);
    assert.ok(seen.status.some((s) => /Queued · [1-9]\d* ahead of you/.test(s)), `a queue position: ${seen.status}`);
    assert.ok(seen.status.some((s) => /Waiting for a GPU/.test(s)), `the ZeroGPU notice: ${seen.status}`);
    const progress = seen.progress.map(Number);
    assert.ok(new Set(progress).size >= 4, `the bar moved: ${progress}`);
    assert.deepEqual(progress, [...progress].sort((a, b) => a - b), "the bar only moves forward");
    assert.equal(progress.at(-1), 100);
    assert.match(await page.textContent("#status"), /Done/);
    assert.match(await page.textContent("#log"), /ZeroGPU queue.*Waiting for a GPU to become available/);
    assert.deepEqual(await page.$eval("#stage img", (i) => [i.naturalWidth, i.naturalHeight]), [128, 128]);
    assert.match(await page.textContent("#outputs"), /prompt: a red fox in fresh snow/);
    await Promise.all(blockers.map((b) => b.result));
    blocker.close();
    await page.screenshot({ path: join(ARTIFACTS, "page.png"), fullPage: true });

    // A second job, cancelled while it runs; started by keyboard.
    await page.fill("#prompt", "a long walk");
    await page.fill("#in-steps", "200");
    await page.press("#prompt", "Control+Enter");
    await page.waitForFunction(() => /Generating/.test(document.querySelector("#status").textContent));
    assert.equal(await page.isEnabled("#cancel"), true);
    await page.click("#cancel");
    await page.waitForFunction(() => /Cancelled/.test(document.querySelector("#status").textContent));
    assert.equal(await page.locator("#gallery li").count(), 1);
    assert.equal(await page.isEnabled("#generate"), true);

    // Over the quota: the error, with a live countdown.
    await page.fill("#prompt", "far too long");
    await page.fill("#in-steps", "3600");
    await page.click("#generate");
    await page.waitForSelector("#error:not([hidden])");
    assert.equal(await page.textContent("#error-title"), "ZeroGPU quota exceeded");
    const before = await page.textContent("#error-retry");
    assert.match(before, /You can try again in \d+:\d\d/);
    await page.waitForFunction((b) => document.querySelector("#error-retry").textContent !== b, before);
    await page.emulateMedia({ colorScheme: "dark" });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(400); // the colours' transitions
    await page.screenshot({ path: join(ARTIFACTS, "page-phone-dark.png"), fullPage: true });

    // The relay restarts (SIGTERM: close code 1001): the page shows it, and reconnects.
    await relay.stop();
    await page.waitForSelector('#conn[data-state="reconnecting"]');
    assert.match(await page.textContent("#conn"), /Reconnecting/);
    relay = await startRelay({ port: relay.port });
    await page.waitForSelector('#conn[data-state="open"]');
    assert.equal(await page.isEnabled("#generate"), true);
    assert.equal(await metric(relay, "spacerelay_sessions_open"), 1);
    assert.deepEqual(problems.filter((p) => !/WebSocket connection to .* failed/.test(p)), []);

    await page.close();
    await waitFor(async () => (await metric(relay, "spacerelay_sessions_open")) === 0, STEP, "spacerelay_sessions_open 0 after the page closed");
  } finally {
    blocker?.close();
    await browser?.close().catch(() => {});
    await relay.stop();
  }
});

function withToken(token) {
  return class extends WebSocket {
    constructor(url, protocols) { super(url, protocols, { headers: { "X-IP-Token": token } }); }
  };
}

/** Records, in the page, each status text and each progress value shown. */
function record(page) {
  return page.evaluate(() => {
    const seen = (window.__seen = { status: [], progress: [] });
    const status = document.querySelector("#status");
    const bar = document.querySelector("#progress");
    new MutationObserver(() => {
      const s = status.textContent.trim();
      if (seen.status.at(-1) !== s) seen.status.push(s);
      const v = bar.getAttribute("aria-valuenow");
      if (v !== null && bar.dataset.mode !== "idle" && seen.progress.at(-1) !== v) seen.progress.push(v);
    }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
}
