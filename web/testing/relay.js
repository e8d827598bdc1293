// Helpers of the tests in ../test: build the spacerelay binary, run it on a loopback port in
// front of its embedded demo Space, and stop it, always.

import { spawn, execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

const BUILD_TIMEOUT = 5 * 60_000; // a cold Go build cache on 2 cores
const READY_TIMEOUT = 20_000;
const STOP_TIMEOUT = 10_000;

const running = new Set();
process.on("exit", () => {
  for (const r of running) r.proc.kill("SIGKILL");
});

let built;

/**
 * The spacerelay binary: $SPACERELAY_BIN if set, else built once per test
 * process with go build into a temporary directory removed at exit.
 */
export function relayBinary() {
  if (process.env.SPACERELAY_BIN) return Promise.resolve(process.env.SPACERELAY_BIN);
  built ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), "spacerelay-web-test-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    const bin = join(dir, "spacerelay");
    await promisify(execFile)("go", ["build", "-o", bin, "./cmd/spacerelay"], { cwd: repoRoot, timeout: BUILD_TIMEOUT });
    return bin;
  })();
  return built;
}

/**
 * Starts the relay on 127.0.0.1:port (0: a free one) and waits for
 * GET /readyz (unless ready is false: a relay whose Space cannot be
 * reached). The returned relay has url, wsURL, port, stop(), kill().
 */
export async function startRelay({ port = 0, args = [], ready = true } = {}) {
  const bin = await relayBinary();
  const proc = spawn(bin, ["--listen", `127.0.0.1:${port}`, "--shutdown-grace", "5s", "--log-format", "text", "--log-level", "info", "--metrics-public", "--demo-token-ttl", "off", ...args], {
    cwd: repoRoot,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, SPACERELAY_LISTEN: "" },
  });
  const relay = { proc, log: "", exited: null };
  relay.exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
  running.add(relay);
  relay.exited.then(() => running.delete(relay));
  const addr = new Promise((resolve, reject) => {
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (s) => {
      relay.log += s;
      const m = /spacerelay listening"? addr=(\S+)/.exec(relay.log);
      if (m) resolve(m[1]);
    });
    relay.exited.then(({ code, signal }) => reject(new Error(`spacerelay exited (${code ?? signal}) before listening:\n${relay.log}`)));
  });
  try {
    const hostport = await withTimeout(addr, READY_TIMEOUT, "spacerelay to listen");
    relay.port = Number(hostport.split(":").pop());
    relay.url = `http://127.0.0.1:${relay.port}`;
    relay.wsURL = `ws://127.0.0.1:${relay.port}/v1/ws`;
    if (ready) await waitFor(async () => (await fetch(`${relay.url}/readyz`)).ok, READY_TIMEOUT, "GET /readyz 200");
  } catch (err) {
    proc.kill("SIGKILL");
    throw err;
  }
  relay.stop = () => stop(relay);
  relay.kill = (signal) => { proc.kill(signal); return relay.exited; };
  return relay;
}

/** Stops every relay still running: a test's safety net for after(). */
export function stopAll() {
  return Promise.all([...running].map(stop));
}

/** SIGTERM, then SIGKILL if the relay has not exited in time. */
async function stop(relay) {
  if (relay.proc.exitCode !== null || relay.proc.signalCode !== null) return relay.exited;
  relay.proc.kill("SIGTERM");
  const t = setTimeout(() => relay.proc.kill("SIGKILL"), STOP_TIMEOUT);
  try {
    return await relay.exited;
  } finally {
    clearTimeout(t);
  }
}

/** The value of a metric without labels, from GET /metrics. */
export async function metric(relay, name) {
  const text = await (await fetch(`${relay.url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Polls cond until it is true, or fails after ms. */
export async function waitFor(cond, ms, what) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      if (await cond()) return;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await sleep(50);
  }
}

export function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); }),
  ]);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
