// The demo page in a real browser: Debian's Chromium driven by
// playwright-core (which never downloads a browser), against the
// spacerelay binary on its embedded demo Space, and against the fake relay
// of ../testing/fakerelay.js for what the relay does not do yet (or cannot
// be made to do on cue). Screenshots of each state go to web/test/artifacts/.
//
// Without Chromium the tests skip and say what is missing; under CI=true
// they fail instead.

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join, dirname, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { connect } from "../spacerelay.js";
import { startRelay, metric, waitFor, withTimeout, sleep } from "../testing/relay.js";
import { startFake, json } from "../testing/fakerelay.js";
import { installPackage } from "../testing/pack.js";
import { gradientPNG } from "../testing/png.js";

const CHROMIUM = process.env.SPACERELAY_CHROMIUM || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), "artifacts");
const STEP = 15_000; // bound of each wait in the page
const T = { timeout: 120_000 };

/** playwright-core's chromium, or why it cannot run here. */
async function browserType() {
  if (!existsSync(CHROMIUM)) return { missing: `no Chromium at ${CHROMIUM} (Debian: apt-get install chromium)` };
  try {
    return { chromium: (await import("playwright-core")).chromium };
  } catch (err) {
    return { missing: `playwright-core is not installed (run npm ci in web/): ${err.message}` };
  }
}

describe("the demo page in Chromium", () => {
  let browser;
  let missing;
  before(async () => {
    const b = await browserType();
    missing = b.missing;
    if (missing) return;
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await withTimeout(b.chromium.launch({ executablePath: CHROMIUM, args: ARGS }), 30_000, "Chromium to start");
  });
  after(() => browser?.close().catch(() => {}));

  /** A new page in its own context, or a skip (a failure under CI=true) without Chromium. */
  async function newPage(t, { width = 1200, height = 900, colorScheme = "light", hasTouch = false } = {}) {
    if (missing) {
      if (process.env.CI === "true") assert.fail(`browser test under CI=true: ${missing}`);
      t.diagnostic(`SKIPPED: ${missing}`);
      t.skip(missing);
      return null;
    }
    const context = await browser.newContext({ viewport: { width, height }, colorScheme, hasTouch, isMobile: hasTouch });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP);
    page.problems = [];
    page.on("pageerror", (err) => page.problems.push(`page error: ${err.message}`));
    page.on("console", (m) => m.type() === "error" && page.problems.push(`console: ${m.text()}`));
    t.after(() => context.close().catch(() => {}));
    return page;
  }

  const shot = (page, name, fullPage = true) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage });
  const noProblems = (page, expected = /^$/) =>
    assert.deepEqual(page.problems.filter((p) => !/WebSocket connection to .* failed/.test(p) && !expected.test(p)), []);

  test("against the relay: queue, progress, image, cancel clears the stage, two prompts at once, quota countdown", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const relay = await startRelay();
    t.after(() => relay.stop());
    let blocker;
    t.after(() => blocker?.close());

    const res = await page.goto(relay.url + "/");
    assert.equal(res.status(), 200, "GET / serves index.html (cmd/spacerelay: Static = web.FS)");
    await page.waitForSelector('#conn[data-state="open"]');
    assert.equal(await metric(relay, "spacerelay_sessions_open"), 1);
    assert.equal(await page.inputValue("#endpoint"), "/generate");
    assert.equal(await page.inputValue("#in-steps"), "8", "the form is built from hello, with the defaults");
    assert.equal(await page.isVisible("#prompt-hint"), true, "the keyboard hint, on a desktop");

    // Another visitor's two jobs run first, so the page's job waits in the queue.
    blocker = await connect(relay.wsURL, { WebSocket: withToken("blocker") });
    const blockers = [1, 2].map((i) => blocker.submit("/generate", { prompt: `blocker ${i}`, steps: 10 }));
    await waitFor(() => blockers.some((b) => b.status === "started") && blockers.some((b) => b.status === "queued"),
      STEP, "one blocker to run and the other to wait");

    await record(page);
    await page.fill("#prompt", "a red fox in fresh snow");
    await page.fill("#in-steps", "12");
    await page.click("#generate");
    await page.waitForFunction(() => Number(document.querySelector("#progress").getAttribute("aria-valuenow")) >= 25);
    await shot(page, "page-running");
    await page.waitForFunction(() => document.querySelector("#stage img")?.naturalWidth > 0 && /Done/.test(document.querySelector("#status").textContent));
    const seen = await page.evaluate(() => window.__seen);
    assert.ok(seen.status.some((s) => /Queued · [1-9]\d* ahead of you/.test(s)), `a queue position: ${seen.status}`);
    assert.ok(seen.status.some((s) => /Waiting for a GPU/.test(s)), `the ZeroGPU notice: ${seen.status}`);
    const progress = seen.progress.map(Number);
    assert.ok(new Set(progress).size >= 4, `the bar moved: ${progress}`);
    assert.deepEqual(progress, [...progress].sort((a, b) => a - b), "the bar only moves forward");
    assert.equal(progress.at(-1), 100);
    assert.match(await page.textContent("#log"), /ZeroGPU queue.*Waiting for a GPU to become available/);
    assert.deepEqual(await page.$eval("#stage img", (i) => [i.naturalWidth, i.naturalHeight]), [128, 128]);
    const outputs = await page.textContent("#outputs");
    assert.match(outputs, /prompt: a red fox in fresh snow/);
    assert.doesNotMatch(outputs, /token/, "no debug-looking token line");
    await Promise.all(blockers.map((b) => b.result));
    blocker.close();
    await shot(page, "page");

    // A second prompt: the stage is cleared at once, and again when it is cancelled (by keyboard).
    await page.fill("#prompt", "a long walk");
    await page.fill("#in-steps", "200");
    await page.press("#prompt", "Control+Enter");
    assert.equal(await page.locator("#stage img").count(), 0, "the last image is not shown as this prompt's");
    await page.waitForFunction(() => /Generating/.test(document.querySelector("#status").textContent));
    await page.keyboard.press("Escape");
    await page.waitForFunction(() => /Cancelled/.test(document.querySelector("#status").textContent));
    assert.equal(await page.locator("#stage img").count(), 0);
    assert.match(await page.textContent("#stage"), /Cancelled/);
    assert.equal(await page.locator("#gallery li").count(), 1);
    await shot(page, "page-cancelled");

    // max_jobs (2) prompts at once, each with its own line; a third must wait for one.
    await page.fill("#prompt", "first of two");
    await page.fill("#in-steps", "20");
    await page.click("#generate");
    await page.fill("#prompt", "second of two");
    await page.fill("#in-steps", "3");
    await page.click("#generate");
    assert.equal(await page.isDisabled("#generate"), true, "two running: the limit");
    await page.waitForFunction(() => document.querySelectorAll("#runs li").length === 2);
    await shot(page, "page-two-prompts");
    await page.waitForFunction(() => document.querySelectorAll("#gallery li").length === 3, null, { timeout: 30_000 });
    assert.equal(await page.isEnabled("#generate"), true);

    // Over the quota: the error, with a live countdown; the stage is cleared.
    await page.fill("#prompt", "far too long");
    await page.fill("#in-steps", "3600");
    await page.click("#generate");
    await page.waitForSelector("#error:not([hidden])");
    assert.equal(await page.textContent("#error-title"), "ZeroGPU quota exceeded");
    assert.equal(await page.locator("#stage img").count(), 0);
    const before = await page.textContent("#error-retry");
    assert.match(before, /You can try again in \d+:\d\d/);
    assert.equal(await page.isVisible("#retry"), false, "no retry button for a quota error");
    await page.waitForFunction((b) => document.querySelector("#error-retry").textContent !== b, before);
    await page.emulateMedia({ colorScheme: "dark" });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(400); // the colours' transitions
    await shot(page, "page-phone-dark");
    noProblems(page);

    await page.close();
    await waitFor(async () => (await metric(relay, "spacerelay_sessions_open")) === 0, STEP, "spacerelay_sessions_open 0 after the page closed");
  });

  test("the relay is killed and restarted: the page carries on by itself, and 'Retry this prompt' runs the lost prompt", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    let relay = await startRelay();
    t.after(() => relay.stop());
    await page.goto(relay.url + "/");
    await page.waitForSelector('#conn[data-state="open"]');
    await page.fill("#prompt", "lost in the crash");
    await page.fill("#in-steps", "30");
    await page.click("#generate");
    await page.waitForFunction(() => /Generating/.test(document.querySelector("#status").textContent));

    await relay.kill("SIGKILL"); // no close frame: 1006
    await page.waitForSelector('#conn[data-state="reconnecting"]');
    await page.waitForSelector("#error:not([hidden])");
    assert.equal(await page.textContent("#error-title"), "Connection lost");
    assert.equal(await page.isVisible("#retry"), true);
    assert.match(await page.textContent("#notice"), /Connection lost: reconnecting/);
    assert.equal(await page.locator("#stage img").count(), 0);
    await shot(page, "page-connection-lost");

    relay = await startRelay({ port: relay.port });
    await page.waitForSelector('#conn[data-state="open"]', { timeout: 30_000 }); // by itself: nothing clicked
    assert.equal(await page.isHidden("#notice"), true);
    await page.click("#retry");
    assert.equal(await page.isHidden("#error"), true);
    await page.waitForFunction(() => /Done/.test(document.querySelector("#status").textContent), null, { timeout: 30_000 });
    assert.match(await page.textContent("#outputs"), /prompt: lost in the crash · steps: 30/);
    assert.equal(await page.locator("#gallery li").count(), 1);
    await shot(page, "page-retried");
    assert.equal(await metric(relay, "spacerelay_sessions_open"), 1);
    noProblems(page);
  });

  test("refusals shown to a person: too many tabs, the Space asleep and starting (from /readyz), sign-in needed (fake relay)", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const fake = await startFake();
    t.after(() => fake.close());
    let mode = "tabs";
    fake.onConnection = (sock) => {
      if (mode === "tabs") sock.ws.close(4429, "too_many_sessions retry_after=2");
      else if (mode === "waking") sock.ws.close(4503, "upstream_unavailable retry_after=1");
      else if (mode === "signin") sock.ws.close(4401, "missing_token");
      else sock.hello();
    };
    await page.goto(fake.http + "/");
    await page.waitForFunction(() => /Too many tabs open: close one, retrying in \d s/.test(document.querySelector("#notice").textContent));
    assert.match(await page.textContent("#conn"), /Retrying in \d s/);
    await shot(page, "refusal-too-many-tabs");

    fake.readyz = { ready: false, state: "unavailable", stage: "SLEEPING", message: "The Space owner/demo is asleep; it wakes up when someone visits it.", retry_after: 5 };
    mode = "waking";
    await page.waitForFunction(() => /The Space is asleep, retrying in \d s/.test(document.querySelector("#notice").textContent));
    assert.match(await page.textContent("#notice-message"), /asleep; it wakes up/);
    await shot(page, "refusal-space-asleep");
    fake.readyz = { ready: false, state: "starting", message: "The relay is reading the Space's API.", retry_after: 5 };
    await page.waitForFunction(() => /The Space is starting, retrying in \d s/.test(document.querySelector("#notice").textContent));
    await shot(page, "refusal-space-starting");

    mode = "ok";
    await page.waitForSelector('#conn[data-state="open"]');
    assert.equal(await page.isHidden("#notice"), true);
    assert.equal(await page.isEnabled("#generate"), true);

    mode = "signin";
    await page.reload();
    await page.waitForFunction(() => /Sign-in needed/.test(document.querySelector("#notice").textContent));
    assert.match(await page.textContent("#conn"), /Sign-in needed/);
    assert.equal(await page.isVisible("#notice-action"), true);
    const n = fake.sockets.length;
    await sleep(300);
    assert.equal(fake.sockets.length, n, "4401 is not retried");
    await shot(page, "refusal-sign-in");
    mode = "ok";
    await page.click("#notice-action");
    await page.waitForSelector('#conn[data-state="open"]');
    noProblems(page, /status of 503/); // GET /readyz while the Space sleeps
  });

  test("against the relay: a Space it cannot reach shown in words from /readyz, retried; sign-in needed without a token", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const waiting = await startRelay({ ready: false, args: ["--upstream", "http://127.0.0.1:9", "--token-policy", "optional"] });
    t.after(() => waiting.stop());
    await page.goto(waiting.url + "/");
    await page.waitForFunction(() => /^The Space is (starting|unavailable|asleep), retrying in \d+ s$/.test(document.querySelector("#notice-title").textContent));
    const ready = await (await fetch(waiting.url + "/readyz")).json();
    assert.equal(ready.ready, false);
    if (ready.message) assert.equal(await page.textContent("#notice-message"), ready.message);
    assert.match(await page.textContent("#conn"), /Retrying in \d+ s/);
    await shot(page, "relay-space-unreachable");

    const strict = await startRelay({ args: ["--token-policy", "require"] });
    t.after(() => strict.stop());
    await page.goto(strict.url + "/");
    await page.waitForFunction(() => /Sign-in needed/.test(document.querySelector("#notice-title").textContent));
    assert.match(await page.textContent("#conn"), /Sign-in needed/);
    assert.equal(await page.textContent("#notice-action"), "Try again");
    await shot(page, "relay-sign-in-needed");
    noProblems(page, /status of 503/);
  });

  test("an image from the file input: upload progress, a slider and a dropdown, the result, and 'use as input' (fake relay)", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const fake = await startFake();
    t.after(() => fake.close());
    fake.onConnection = (sock) => {
      sock.hello({ endpoints: [RESTYLE], limits: { max_jobs: 2, max_message_bytes: 65536, max_file_bytes: 1 << 20, max_upload_bytes: 1 << 20, max_session_upload_bytes: 4 << 20, upload_chunk_bytes: 4096 } });
      restyleLike(sock);
    };
    const png = gradientPNG(160, 120);
    await page.goto(fake.http + "/");
    await page.waitForSelector('#conn[data-state="open"]');
    assert.equal(await page.textContent("#title"), "Transform an image");
    assert.equal(await page.getAttribute("#file-image", "accept"), "image/*");
    assert.deepEqual(await page.$$eval("#in-style option", (os) => os.map((o) => o.textContent)), ["Ink", "Watercolour", "Neon"]);
    assert.deepEqual(await page.$eval("#in-strength", (e) => [e.type, e.min, e.max, e.step, e.value]), ["range", "0", "1", "0.05", "0.6"]);
    assert.equal(await page.textContent("#in-strength-info"), "How far from the original");

    await page.setInputFiles("#file-image", { name: "gradient.png", mimeType: "image/png", buffer: png });
    await page.waitForFunction(() => document.querySelector(".drop .thumb img")?.complete);
    assert.match(await page.textContent(".drop"), /gradient\.png/);
    await page.fill("#prompt", "as a watercolour");
    await page.selectOption("#in-style", { label: "Watercolour" });
    await page.fill("#in-strength", "0.85");
    await shot(page, "upload-picked");
    await record(page);
    await page.click("#generate");
    await page.waitForFunction(() => /Done/.test(document.querySelector("#status").textContent) && document.querySelector("#stage img")?.naturalWidth > 0);
    const seen = await page.evaluate(() => window.__seen);
    assert.ok(seen.status.some((s) => /Uploading gradient\.png\s*· \d+%/.test(s)), `upload progress: ${seen.status}`);
    assert.deepEqual(await page.$eval("#stage img", (i) => [i.naturalWidth, i.naturalHeight]), [160, 120]);
    const sock = fake.sockets[0];
    const up = sock.sent("upload")[0];
    assert.deepEqual([up.name, up.mime, up.size], ["gradient.png", "image/png", png.length]);
    assert.ok(sock.bytes(up.id).equals(png), "the bytes arrived intact");
    assert.deepEqual(sock.sent("submit")[0].inputs, { image: { upload: up.id }, prompt: "as a watercolour", strength: 0.85, style: "watercolour" });
    await shot(page, "upload-result");

    // The result, fed into the next job: sent as the relay's file, not uploaded again.
    await page.click("#stage-actions .use");
    await page.waitForFunction(() => /restyled\.png/.test(document.querySelector(".drop").textContent));
    await shot(page, "use-as-input");
    await page.fill("#prompt", "again, in ink");
    await page.click("#generate");
    await page.waitForFunction(() => document.querySelectorAll("#gallery li").length === 2);
    assert.equal(sock.sent("upload").length, 1);
    assert.deepEqual(sock.sent("submit")[1].inputs.image, { file: "f1" });

    // Keyboard: the drop zone's picker takes focus and shows it.
    await page.focus("#file-image");
    assert.equal(await page.$eval(".drop", (d) => getComputedStyle(d).boxShadow !== "none"), true, "a focus ring on the drop zone");
    noProblems(page);
  });

  test("a page kept open past two token lifetimes: a job each period, refreshed by itself, no error; a failed refresh is shown (fake relay)", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const fake = await startFake();
    t.after(() => fake.close());
    const TTL = 2; // seconds
    let expires = 0;
    const expiring = (sock) => setTimeout(() => sock.send({ type: "token_expiring", expires_in: TTL / 2 }), (TTL * 1000) / 2);
    fake.onConnection = (sock) => {
      expires = Date.now() + TTL * 1000;
      sock.hello({ token: { present: true, expires_at: null, expires_in: TTL, refresh: { url: "/v1/sessions/s1/token", key: "k".repeat(43) } } });
      expiring(sock);
      sock.ws.on("message", (raw, binary) => {
        const m = binary ? {} : JSON.parse(String(raw));
        if (m.type !== "submit") return;
        const send = (o) => sock.send({ id: m.id, ...o });
        if (Date.now() > expires) return send({ type: "error", code: "token_expired", message: "the visitor's token has expired" });
        send({ type: "accepted" });
        send({ type: "result", data: [null, JSON.stringify({ prompt: m.inputs.prompt })], duration: 0.1 });
      });
    };
    let refreshOK = true;
    fake.onRefresh = (req, res) => {
      if (!refreshOK) return json(res, 404, { error: { code: "unknown_session", message: "no such session" } });
      expires = Date.now() + TTL * 1000;
      json(res, 200, { expires_at: null, expires_in: TTL });
      expiring(fake.sockets.at(-1));
    };
    await page.goto(fake.http + "/");
    await page.waitForSelector('#conn[data-state="open"]');
    const start = Date.now();
    for (let i = 1; Date.now() - start < 2.5 * TTL * 1000 || i <= 3; i++) {
      await page.fill("#prompt", `period ${i}`);
      await page.click("#generate");
      await page.waitForFunction((p) => /Done/.test(document.querySelector("#status").textContent) && document.querySelector("#outputs").textContent.includes(p), `period ${i}`);
      await sleep(TTL * 500);
    }
    assert.ok(fake.refreshes.length >= 2, `${fake.refreshes.length} refreshes`);
    assert.equal(fake.sockets.length, 1, "no reload, no new socket");
    assert.equal(await page.isHidden("#notice"), true, "nothing shows while refreshes work");
    assert.equal(await page.isHidden("#error"), true);

    refreshOK = false;
    await page.waitForFunction(() => /Your sign-in could not be renewed/.test(document.querySelector("#notice").textContent), null, { timeout: 10_000 });
    assert.equal(await page.textContent("#notice-action"), "Reload");
    await shot(page, "token-refresh-failed");
    noProblems(page, /status of 404/); // the refused refresh
  });

  test("on a phone: no keyboard hint, and the result is scrolled into view", T, async (t) => {
    const page = await newPage(t, { width: 390, height: 700, hasTouch: true });
    if (!page) return;
    const relay = await startRelay();
    t.after(() => relay.stop());
    await page.goto(relay.url + "/");
    await page.waitForSelector('#conn[data-state="open"]');
    assert.equal(await page.isHidden("#prompt-hint"), true);
    await page.fill("#prompt", "on a phone");
    await page.fill("#in-steps", "3");
    await page.tap("#generate");
    await page.waitForFunction(() => document.querySelector("#stage img")?.naturalWidth > 0);
    await page.waitForFunction(() => {
      const r = document.querySelector("#stage").getBoundingClientRect();
      return r.top >= 0 && r.bottom <= innerHeight; // all of it, once the smooth scroll is over
    });
    await shot(page, "page-phone-result", false);
    noProblems(page);
  });

  test("the npm package in the browser: a page of another origin imports spacerelay through an import map and runs a job on the relay", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const { dir } = await installPackage();
    const site = await serveDir(dir, () => `<!doctype html><meta charset="utf-8"><title>package</title><link rel="icon" href="data:,">
<script type="importmap">{"imports":{"spacerelay":"/node_modules/spacerelay/spacerelay.js"}}</script>
<script type="module">
import { connect, PROTOCOL } from "spacerelay";
const relay = await connect(new URLSearchParams(location.search).get("relay"));
const { data } = await relay.predict("/generate", { prompt: "from the package", steps: 1 });
window.done = { protocol: PROTOCOL, type: data[0].type, size: data[0].size };
</script>`);
    t.after(() => site.close());
    const relay = await startRelay({ args: ["--allowed-origins", `127.0.0.1:${site.port}`] });
    t.after(() => relay.stop());
    await page.goto(`${site.url}/?relay=${encodeURIComponent(relay.wsURL)}`);
    const done = await page.waitForFunction(() => window.done).then((h) => h.jsonValue());
    assert.equal(done.protocol, 1);
    assert.equal(done.type, "image/png");
    assert.ok(done.size > 0);
    noProblems(page);
  });

  test("the relay-served module from another origin (CORS on /spacerelay.js)", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const site = await serveDir(null, () => `<!doctype html><meta charset="utf-8"><title>cors</title><link rel="icon" href="data:,">
<script type="module">
const relay = new URLSearchParams(location.search).get("relay");
try {
  const { connect } = await import(relay + "/spacerelay.js");
  const c = await connect(relay.replace(/^http/, "ws") + "/v1/ws");
  window.done = { ok: true, session: c.session };
} catch (err) { window.done = { ok: false, error: String(err) }; }
</script>`);
    t.after(() => site.close());
    const relay = await startRelay({ args: ["--allowed-origins", `127.0.0.1:${site.port}`] });
    t.after(() => relay.stop());
    await page.goto(`${site.url}/?relay=${encodeURIComponent(relay.url)}`);
    const done = await page.waitForFunction(() => window.done).then((h) => h.jsonValue());
    assert.equal(done.ok, true, done.error);
  });

  test("against the relay's /restyle: a real PNG from the file input, the transformed result seen", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const relay = await startRelay();
    t.after(() => relay.stop());
    await page.goto(relay.url + "/");
    await page.waitForSelector('#conn[data-state="open"]');
    const names = await page.$$eval("#endpoint option", (os) => os.map((o) => o.value));
    assert.ok(names.includes("/restyle"), `endpoints ${names}`);
    await page.selectOption("#endpoint", "/restyle");
    const png = gradientPNG(128, 128);
    await page.setInputFiles("input[type=file]", { name: "gradient.png", mimeType: "image/png", buffer: png });
    if (await page.$("#prompt-field:not([hidden])")) await page.fill("#prompt", "as a watercolour");
    await page.click("#generate");
    await page.waitForFunction(() => /Done/.test(document.querySelector("#status").textContent) && document.querySelector("#stage img")?.naturalWidth > 0, null, { timeout: 30_000 });
    // Visibly transformed: the result differs from the input, pixel by pixel.
    const diff = await page.$eval("#stage img", async (img, src) => {
      const pixels = async (im) => {
        await im.decode();
        const c = Object.assign(document.createElement("canvas"), { width: 64, height: 64 });
        const g = c.getContext("2d");
        g.drawImage(im, 0, 0, 64, 64);
        return g.getImageData(0, 0, 64, 64).data;
      };
      const a = await pixels(img);
      const b = await pixels(Object.assign(new Image(), { src }));
      let sum = 0;
      for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
      return sum / a.length;
    }, `data:image/png;base64,${png.toString("base64")}`);
    assert.ok(diff > 8, `the result differs from the input by ${diff.toFixed(1)} per channel on average`);
    await shot(page, "restyle-relay");
    noProblems(page);
  });

  test("against the relay's /preview: the previews counted against the Space's steps, then the run's time", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const relay = await startRelay();
    t.after(() => relay.stop());
    await page.goto(relay.url + "/");
    await page.waitForSelector('#conn[data-state="open"]');
    await page.selectOption("#endpoint", "/preview");
    await record(page);
    await page.fill("#prompt", "a fox, bit by bit");
    await page.fill("#in-steps", "8");
    const start = Date.now();
    await page.click("#generate");
    // Seen by a person, not only for an instant: each preview's status
    // lasts until the next, through the progress of the step between.
    await page.waitForFunction(() => /Rendering\s*· preview [1-7] of 8$/.test(document.querySelector("#status").textContent.trim()));
    await shot(page, "preview-rendering");
    await page.waitForFunction(() => /Done/.test(document.querySelector("#status").textContent));
    const wall = (Date.now() - start) / 1000;
    const seen = await page.evaluate(() => window.__seen);
    const rendering = seen.status.filter((s) => /Rendering/.test(s));
    assert.ok(rendering.length >= 2 && rendering.every((s) => /preview [1-7] of 8$/.test(s)), `previews counted: ${seen.status}`);
    assert.ok(!seen.status.slice(seen.status.indexOf(rendering[0])).some((s) => /Generating/.test(s)), `no step after the first preview hides it: ${seen.status}`);
    // The run's time: its eight steps of the demo's 100 ms, and no more than the test saw.
    const status = (await page.textContent("#status")).trim();
    const done = /^Done\s*· in ([\d.]+) s$/.exec(status);
    assert.ok(done, `Done with a duration: ${status}`);
    const took = Number(done[1]);
    assert.ok(took >= 0.7 && took <= wall + 0.5, `in ${took} s (rounded), for eight steps of 0.1 s seen to take ${wall} s`);
    assert.deepEqual(await page.$eval("#stage img", (i) => [i.naturalWidth, i.naturalHeight]), [128, 128]);
    noProblems(page);
  });

  test("against the relay's /gallery and /files: several real files from one picker, each reaching the Space", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const relay = await startRelay();
    t.after(() => relay.stop());
    await page.goto(relay.url + "/");
    await page.waitForSelector('#conn[data-state="open"]');
    await page.selectOption("#endpoint", "/gallery");
    assert.deepEqual(await page.$eval("#file-gallery", (p) => [p.multiple, p.accept]), [true, "image/*,video/*"], "a Gallery takes several images or videos");
    const pngs = [gradientPNG(96, 64), gradientPNG(64, 96)];
    await page.setInputFiles("#file-gallery", pngs.map((buffer, i) => ({ name: `gallery-${i + 1}.png`, mimeType: "image/png", buffer })));
    await page.waitForFunction(() => [...document.querySelectorAll(".drop .thumb img")].filter((i) => i.complete && i.naturalWidth > 0).length === 2);
    assert.match(await page.textContent(".drop"), /2 images.*choose others/);
    await shot(page, "gallery-picked");
    await page.click("#generate");
    await page.waitForFunction(() => /Done/.test(document.querySelector("#status").textContent));
    // The demo's /gallery answers the kind and sha256 of each item it got.
    const got = await page.textContent("#outputs");
    assert.match(got, /count: 2/);
    for (const png of pngs) assert.ok(got.includes(`{"kind":"image","sha256":"${sha256(png)}","caption":null}`), `${sha256(png)} in ${got}`);
    await shot(page, "gallery-result");

    // A File of several files takes any file: no accept, an icon for the text.
    await page.selectOption("#endpoint", "/files");
    assert.deepEqual(await page.$eval("#file-files", (p) => [p.multiple, p.accept]), [true, ""]);
    const files = [{ name: "a.png", mimeType: "image/png", buffer: pngs[0] }, { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("two files at once\n") }];
    await page.setInputFiles("#file-files", files);
    assert.match(await page.textContent(".drop"), /2 files/);
    await page.click("#generate");
    await page.waitForFunction(() => /Done/.test(document.querySelector("#status").textContent) && /count: 2/.test(document.querySelector("#outputs").textContent));
    const sums = await page.textContent("#outputs");
    for (const f of files) assert.ok(sums.includes(sha256(f.buffer)), `${f.name}'s sha256 in ${sums}`);
    await page.emulateMedia({ colorScheme: "dark" });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(400); // the colours' transitions
    await shot(page, "files-phone-dark");
    noProblems(page);
  });

  test("against the relay's demo tokens: a page kept open past two token lifetimes completes a job each period", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    const TTL = 4;
    const relay = await startRelay({ args: ["--demo-token-ttl", `${TTL}s`, "--token-refresh-margin", "2s"] });
    t.after(() => relay.stop());
    await page.goto(relay.url + "/");
    await page.waitForSelector('#conn[data-state="open"]');
    const start = Date.now();
    for (let i = 1; Date.now() - start < 2.2 * TTL * 1000; i++) {
      await page.fill("#prompt", `token period ${i}`);
      await page.fill("#in-steps", "1");
      await page.click("#generate");
      await page.waitForFunction((p) => /Done/.test(document.querySelector("#status").textContent) && document.querySelector("#outputs").textContent.includes(p), `token period ${i}`);
      await sleep(TTL * 500);
    }
    assert.equal(await page.isHidden("#notice"), true);
    assert.equal(await page.isHidden("#error"), true);
    noProblems(page);
  });
});

// RESTYLE is an image endpoint as section 10's hello describes one.
const RESTYLE = {
  name: "/restyle",
  inputs: [
    { name: "image", label: "Image", type: "file", component: "Image", required: true, file_types: ["image"] },
    { name: "prompt", label: "Prompt", type: "string", component: "Textbox", required: true },
    { name: "strength", label: "Strength", info: "How far from the original", type: "number", component: "Slider", required: false, default: 0.6, minimum: 0, maximum: 1, step: 0.05 },
    { name: "style", label: "Style", type: "string", component: "Dropdown", required: false, default: "ink",
      choices: [{ value: "ink", label: "Ink" }, { value: "watercolour", label: "Watercolour" }, { value: "neon", label: "Neon" }] },
  ],
  outputs: [{ name: "image", component: "Image" }, { name: "info", component: "Textbox" }],
};

// restyleLike answers /restyle submits on sock: progress, then the input
// image back as the result (the fake does not draw), named restyled.png.
function restyleLike(sock) {
  const files = new Map(); // file id → bytes
  let n = 0;
  sock.ws.on("message", (raw, binary) => {
    if (binary) return;
    const m = JSON.parse(String(raw));
    if (m.type !== "submit") return;
    sock.afterUploads(m, async () => {
      const send = (o) => sock.send({ id: m.id, ...o });
      const ref = m.inputs.image;
      const bytes = ref.upload ? sock.bytes(ref.upload) : files.get(ref.file);
      send({ type: "accepted" });
      send({ type: "started", eta: 1 });
      for (let i = 0; i < 4; i++) {
        send({ type: "progress", steps: [{ index: i, length: 4, unit: "steps" }] });
        await sleep(60);
      }
      const id = `f${++n}`;
      files.set(id, bytes);
      send({ type: "file", file: id, name: "restyled.png", mime: "image/png", size: bytes.length });
      sock.ws.send(bytes);
      send({ type: "result", data: [{ file: id }, JSON.stringify({ style: m.inputs.style ?? "ink" })], duration: 0.3 });
    });
  });
}

/** Serves dir (or only the page) on a loopback port: GET / is page(port). */
async function serveDir(dir, page) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (path === "/") {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" }).end(page(server.address().port));
      return;
    }
    const file = dir && normalize(join(dir, path));
    if (!file || !file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": file.endsWith(".js") ? "text/javascript" : "application/octet-stream" }).end(readFileSync(file));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return { port, url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => { server.close(r); server.closeAllConnections(); }) };
}

function sha256(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

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
