// The guides' code as a reader copies it: the page snippet of
// deploy/huggingface/README.md runs against the fake relay as written, and
// its shell steps name only what they have cloned.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import WebSocket from "ws";
import { connect } from "../spacerelay.js";
import { startFake } from "../testing/fakerelay.js";
import { repoRoot, withTimeout } from "../testing/relay.js";

const GUIDE = join(repoRoot, "deploy", "huggingface", "README.md");

/** The fenced blocks of lang in the section of markdown whose heading starts with heading. */
function blocks(markdown, heading, lang) {
  const section = markdown.split(/^## /m).find((s) => s.startsWith(heading));
  assert.ok(section, `a section "${heading}"`);
  return [...section.matchAll(new RegExp("^```" + lang + "\\n([\\s\\S]*?)^```", "gm"))].map((m) => m[1]);
}

test("deploy/huggingface: the page snippet of section 5 runs as written, and shows the queue in words", { timeout: 20_000 }, async (t) => {
  const [snippet] = blocks(readFileSync(GUIDE, "utf8"), "5. Serve your own frontend", "js");
  assert.ok(snippet, "a js block");
  const importLine = 'import { connect } from "/spacerelay.js";\n';
  assert.ok(snippet.startsWith(importLine), "it imports the client from the relay");
  const fake = await startFake();
  t.after(() => fake.close());
  fake.onConnection = (sock) => {
    sock.hello({ endpoints: [{ name: "/generate", inputs: [{ name: "prompt", type: "string" }], outputs: [{ name: "image" }] }] });
    sock.ws.on("message", (raw, isBinary) => {
      const m = isBinary ? null : JSON.parse(String(raw));
      if (m?.type !== "submit") return;
      // Two ahead, then next, then a queue that gives no position.
      for (const position of [2, 0, null]) sock.send({ type: "queued", id: m.id, position, queue_size: 3 });
      sock.send({ type: "result", id: m.id, data: ["done"], duration: 0.1 });
    });
  };
  const shown = [];
  const status = { set textContent(s) { shown.push(s); } };
  const clients = [];
  // The page's connect, relative to the relay's origin as in a browser.
  const pageConnect = async (url, options) => {
    const c = await connect(new URL(url, fake.http).href, { WebSocket, ...options });
    clients.push(c);
    return c;
  };
  t.after(() => clients.forEach((c) => c.close()));
  const run = new (async function () {}).constructor("connect", "status", snippet.slice(importLine.length));
  await withTimeout(run(pageConnect, status), 10_000, "the snippet to end");
  assert.deepEqual(shown, ["2 ahead of you", "next", "next"]);
});

test("deploy/huggingface: step 2 clones this project before copying its files, and they exist", () => {
  const [sh] = blocks(readFileSync(GUIDE, "utf8"), "2. Put the two files in it", "sh");
  const lines = sh.trim().split("\n");
  const clone = lines.findIndex((l) => l === "git clone https://github.com/spacerelay/spacerelay");
  const cp = lines.findIndex((l) => l.startsWith("cp "));
  assert.ok(clone >= 0 && clone < cp, `the project is cloned before the cp:\n${sh}`);
  const sources = lines[cp].split(/\s+/).slice(1, -1);
  assert.ok(sources.length > 0);
  for (const src of sources) {
    assert.ok(src.startsWith("spacerelay/"), `${src} is in the clone`);
    assert.ok(existsSync(join(repoRoot, src.slice("spacerelay/".length))), `${src} exists in the project`);
  }
});
