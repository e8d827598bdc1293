// The example frontend in a real browser (issue 15, item 3): Debian's
// Chromium, driven by the playwright-core that web/node_modules has,
// loads examples/prompt-to-image through the relay's --static, in front of
// its embedded demo Space, and completes jobs: a queue position behind
// another visitor, progress, the image; cancel; the quota error with its
// countdown; the image input (the demo's /restyle); with the demo's tokens
// that expire, a visit past two token lifetimes; and, before any of it, a
// Space the relay cannot reach, said in words with the retry's countdown.
//
// Run it with `task examples-test` (or `node --test examples/` after
// `npm ci` in web/). Without Chromium it skips and says what is missing;
// under CI=true it fails instead.

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const site = dirname(here);
const web = join(site, "..", "..", "web");
const { startRelay, waitFor, withTimeout } = await import(pathToFileURL(join(web, "testing", "relay.js")));
const { gradientPNG } = await import(pathToFileURL(join(web, "testing", "png.js")));
const { connect } = await import(pathToFileURL(join(web, "spacerelay.js")));

const CHROMIUM = process.env.SPACERELAY_CHROMIUM || "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"];
const STEP = 15_000; // bound of each wait in the page
const T = { timeout: 120_000 };

// web/'s packages, for a test outside web/.
const requireWeb = createRequire(join(web, "package.json"));

function browserType() {
  if (!existsSync(CHROMIUM)) return { missing: `no Chromium at ${CHROMIUM} (Debian: apt-get install chromium)` };
  try {
    return { chromium: requireWeb("playwright-core").chromium, WebSocket: requireWeb("ws") };
  } catch (err) {
    return { missing: `web/node_modules has no playwright-core or ws (run npm ci in web/): ${err.message}` };
  }
}

describe("examples/prompt-to-image in Chromium, served by --static", () => {
  let b;
  let browser;
  let relay;
  before(async () => {
    b = browserType();
    if (b.missing) return;
    browser = await withTimeout(b.chromium.launch({ executablePath: CHROMIUM, args: ARGS }), 30_000, "Chromium to start");
    relay = await startRelay({ args: ["--static", site] });
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await relay?.stop();
  });

  async function newPage(t, { width = 900, height = 1000, hasTouch = false } = {}) {
    if (b.missing) {
      if (process.env.CI === "true") assert.fail(`browser test under CI=true: ${b.missing}`);
      t.skip(b.missing);
      return null;
    }
    const context = await browser.newContext({ viewport: { width, height }, hasTouch, isMobile: hasTouch });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP);
    page.problems = [];
    page.on("pageerror", (err) => page.problems.push(`page error: ${err.message}`));
    page.on("console", (m) => m.type() === "error" && page.problems.push(`console: ${m.text()}`));
    t.after(() => context.close().catch(() => {}));
    await page.goto(relay.url + "/");
    await page.waitForSelector('#connection[data-state="open"]');
    await page.waitForSelector("#generate:not([disabled])");
    return page;
  }

  const doneWith = (page, prompt) =>
    page.waitForFunction((p) => document.querySelector("#status").textContent === "Done." && document.querySelector("#result-caption").textContent === p
      && document.querySelector("#result-image").naturalWidth > 0, prompt);

  test("a prompt waits in the queue behind another visitor, shows its progress, and ends with its image", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    assert.equal(await page.inputValue("#opt-steps"), "8", "a control per input of /generate, with its default");
    assert.match(await page.textContent("#token"), /No visitor token/, "the demo admits a page without a token");
    assert.equal(await page.isVisible(".hint"), true, "the Ctrl+Enter hint, on a desktop");

    // Another visitor's two jobs run first (the demo Space runs one at a time).
    const other = await connect(relay.wsURL, { WebSocket: b.WebSocket });
    t.after(() => other.close());
    const ahead = [1, 2].map((i) => other.submit("/generate", { prompt: `ahead ${i}`, steps: 8 }));
    await waitFor(() => ahead.some((j) => j.status === "started"), STEP, "the other visitor's first job to start");

    await page.evaluate(() => {
      window.seen = { status: [], progress: [] };
      new MutationObserver(() => {
        const s = document.querySelector("#status").textContent;
        if (window.seen.status.at(-1) !== s) window.seen.status.push(s);
        const v = document.querySelector("#progress").value;
        if (window.seen.progress.at(-1) !== v) window.seen.progress.push(v);
      }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
    });
    await page.fill("#prompt", "a lighthouse at dawn");
    await page.fill("#opt-steps", "10");
    await page.press("#prompt", "Control+Enter");
    await doneWith(page, "a lighthouse at dawn");
    const seen = await page.evaluate(() => window.seen);
    assert.ok(seen.status.some((s) => /Queued · [1-9]\d* ahead of you/.test(s)), `a queue position: ${seen.status}`);
    assert.ok(seen.status.some((s) => /Waiting for a GPU/.test(s)), `the Space's notice: ${seen.status}`);
    assert.ok(seen.status.some((s) => /step 10 of 10/.test(s)), `the steps: ${seen.status}`);
    assert.ok(new Set(seen.progress).size >= 4, `the bar moved: ${seen.progress}`);
    assert.deepEqual(await page.$eval("#result-image", (i) => [i.naturalWidth, i.naturalHeight]), [128, 128]);
    assert.equal(await page.locator("#gallery li").count(), 1);
    await Promise.all(ahead.map((j) => j.result));
    assert.deepEqual(page.problems, []);
  });

  test("cancel, and the quota error with its countdown", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    await page.fill("#prompt", "a long walk");
    await page.fill("#opt-steps", "200");
    await page.click("#generate");
    await page.waitForFunction(() => /step \d+ of 200/.test(document.querySelector("#status").textContent));
    await page.click("#cancel");
    await page.waitForFunction(() => document.querySelector("#status").textContent === "Cancelled.");
    assert.equal(await page.isHidden("#result"), true);

    await page.fill("#prompt", "far too long");
    await page.fill("#opt-steps", "3600");
    await page.click("#generate");
    await page.waitForSelector("#error:not([hidden])");
    assert.equal(await page.textContent("#error-title"), "ZeroGPU quota exceeded");
    const before = await page.textContent("#error-message");
    assert.match(before, /You can try again in \d+:\d\d\./);
    await page.waitForFunction((b) => document.querySelector("#error-message").textContent !== b, before);
    assert.equal(await page.isEnabled("#generate"), true);
    assert.deepEqual(page.problems, []);
  });

  test("behind the demo's token stamping: the page says the visitor has a token, and works past two token lifetimes", T, async (t) => {
    if (b.missing) return newPage(t);
    const TTL = 4;
    const stamped = await startRelay({ args: ["--static", site, "--demo-token-ttl", `${TTL}s`, "--token-refresh-margin", "2s"] });
    t.after(() => stamped.stop());
    const context = await browser.newContext();
    t.after(() => context.close().catch(() => {}));
    const page = await context.newPage();
    page.setDefaultTimeout(STEP);
    const problems = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
    await page.goto(stamped.url + "/");
    await page.waitForSelector("#generate:not([disabled])");
    assert.match(await page.textContent("#token"), /your own GPU quota/);
    const start = Date.now();
    for (let i = 1; Date.now() - start < 2.2 * TTL * 1000; i++) {
      await page.fill("#prompt", `period ${i}`);
      await page.fill("#opt-steps", "1");
      await page.click("#generate");
      await doneWith(page, `period ${i}`);
      await new Promise((r) => setTimeout(r, TTL * 400));
    }
    assert.equal(await page.isHidden("#error"), true);
    assert.deepEqual(problems, []);
  });

  test("on a phone: no Ctrl+Enter hint, with no keyboard to press it on", T, async (t) => {
    const page = await newPage(t, { width: 390, height: 800, hasTouch: true });
    if (!page) return;
    assert.equal(await page.isHidden(".hint"), true);
    assert.equal(await page.isVisible("#generate"), true);
    assert.deepEqual(page.problems, []);
  });

  test("a Space the relay cannot reach: the page says so in words, from /readyz, with the retry's countdown", T, async (t) => {
    if (b.missing) return newPage(t);
    const waiting = await startRelay({ ready: false, args: ["--static", site, "--upstream", "http://127.0.0.1:9", "--token-policy", "optional"] });
    t.after(() => waiting.stop());
    const context = await browser.newContext();
    t.after(() => context.close().catch(() => {}));
    const page = await context.newPage();
    page.setDefaultTimeout(STEP);
    const problems = [];
    page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
    page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
    await page.goto(waiting.url + "/");
    const shown = /^The Space is (starting|unavailable|asleep|paused), retrying in (\d+) s$/;
    await page.waitForFunction((re) => new RegExp(re).test(document.querySelector("#connection").textContent), shown.source);
    assert.equal(await page.getAttribute("#connection", "data-state"), "reconnecting");
    const ready = await (await fetch(waiting.url + "/readyz")).json();
    assert.equal(ready.ready, false);
    assert.ok(ready.message, "the relay says why");
    await page.waitForFunction((m) => document.querySelector("#status").textContent === m, ready.message);
    const first = await page.textContent("#connection");
    await page.waitForFunction((f) => document.querySelector("#connection").textContent !== f, first);
    assert.match(await page.textContent("#connection"), /^The Space is \w+, retrying(?: in \d+ s|…)$/, "the countdown moves");
    assert.equal(await page.isDisabled("#generate"), true, "nothing to run before the Space's endpoints are known");
    assert.deepEqual(problems.filter((p) => !/status of 503|WebSocket connection to .* failed/.test(p)), [],
      "only GET /readyz's 503 and the refused sockets");
  });

  test("an image input: the prompt goes with the image to the endpoint that takes one", T, async (t) => {
    const page = await newPage(t);
    if (!page) return;
    assert.equal(await page.isVisible("#image-input"), true, "the demo's /restyle takes an image and a prompt");
    await page.setInputFiles("#image", { name: "start.png", mimeType: "image/png", buffer: gradientPNG(96, 96) });
    await page.waitForSelector("#image-preview:not([hidden])");
    await page.fill("#prompt", "as a watercolour");
    await page.click("#generate");
    await doneWith(page, "as a watercolour");
    assert.deepEqual(await page.$eval("#result-image", (i) => [i.naturalWidth, i.naturalHeight]), [96, 96],
      "the image of /restyle, the size of the input, not a 128 x 128 /generate");
    assert.deepEqual(page.problems, []);
  });
});
