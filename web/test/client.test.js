// Tests of spacerelay.js in Node against the spacerelay binary on its
// embedded demo Space (testdata/gradio/SPEC.md). What the real relay
// cannot be made to do, or does not do yet, is in fake.test.js.

import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import { connect, Client, SpaceRelayError, spaceStatus } from "../spacerelay.js";
import { startRelay, stopAll, waitFor, withTimeout, sleep } from "../testing/relay.js";

const T = { timeout: 30_000 };
const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const FAST = { reconnect: { minDelay: 50, maxDelay: 400 } };

let tokens = 0;
/**
 * A ws WebSocket that sends its own X-IP-Token (a quota pool of its own on
 * the demo Space) and records its instances in sockets.
 */
function tokenWS(sockets = []) {
  const token = `test-token-${process.pid}-${++tokens}`;
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols, { headers: { "X-IP-Token": token } });
      sockets.push(this);
    }
  };
}

/** All events of a job, bounded in time. */
function events(job, ms = 20_000) {
  return withTimeout((async () => {
    const out = [];
    for await (const ev of job) out.push(ev);
    return out;
  })(), ms, `the end of job ${job.id}`);
}

/** The next statechange of client to state. */
function nextState(client, state, ms = 15_000) {
  return withTimeout(new Promise((resolve) => {
    const off = client.on("statechange", (d) => { if (d.state === state) { off(); resolve(d); } });
  }), ms, `state ${state}`);
}

async function assertPNG(file, name = "image.png") {
  assert.ok(file instanceof Blob, `${file} is a Blob`);
  assert.equal(file.name, name);
  assert.equal(file.type, "image/png");
  const bytes = new Uint8Array(await file.arrayBuffer());
  assert.deepEqual([...bytes.slice(0, 8)], PNG);
}

describe("spacerelay.js against the relay", () => {
  let relay;
  const clients = [];
  const open = async (opts = {}) => {
    const c = await connect(relay.wsURL, { WebSocket: tokenWS(), ...opts });
    clients.push(c);
    return c;
  };
  before(async () => { relay = await startRelay(); });
  after(async () => {
    for (const c of clients) c.close();
    await relay?.stop();
  });

  test("connect resolves after hello, with endpoints, limits and token", T, async () => {
    const c = await connect(relay.url + "/v1/ws", { WebSocket: tokenWS() }); // http: becomes ws:
    clients.push(c);
    assert.equal(c.state, "open");
    assert.equal(c.url, relay.wsURL);
    assert.equal(c.protocol, 1);
    assert.equal(c.relayVersion, JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version);
    assert.match(c.session, /^[0-9a-f-]{36}$/);
    // The test Space of testdata/gradio/SPEC.md; /add_message (queue=False) is listed once discovery serves direct calls.
    assert.deepEqual(c.endpoints.map((e) => e.name).filter((n) => n !== "/add_message"),
      ["/audio", "/bot_reply", "/chat", "/count", "/files", "/gallery", "/generate", "/preview", "/reset_count", "/restyle", "/ticks", "/video", "/whoami"]);
    const gen = c.endpoint("/generate");
    assert.deepEqual(gen.inputs.map((i) => [i.name, i.type, i.required]), [
      ["prompt", "string", true], ["steps", "integer", false], ["width", "integer", false], ["height", "integer", false],
    ]);
    assert.equal(gen.inputs[1].default, 8);
    assert.deepEqual(gen.outputs.map((o) => o.name), ["image", "info"]);
    assert.equal(c.limits.maxJobs, 2);
    assert.equal(c.limits.maxMessageBytes, 65536);
    assert.equal(c.limits.maxFileBytes, 20971520);
    assert.equal(c.token.present, true);
    assert.equal(c.token.expiresAt, null);
    const rtt = await c.ping();
    assert.ok(rtt >= 0 && rtt < 5000, `ping round trip ${rtt}`);
  });

  test("a relative URL needs a page to resolve against", T, async () => {
    await assert.rejects(connect("/v1/ws", { WebSocket }), TypeError);
    await assert.rejects(connect("ftp://127.0.0.1/v1/ws", { WebSocket }), TypeError);
  });

  test("a /generate job: queued with its position, started, logs, progress, then the result with a PNG", T, async () => {
    // Two jobs of another visitor run first: the demo Space runs one job at a time.
    const other = await open();
    const blockers = [1, 2].map((i) => other.submit("/generate", { prompt: `blocker ${i}`, steps: 4 }));
    await sleep(50);
    const c = await open();
    const job = c.submit("/generate", { prompt: "a red fox in snow", steps: 5 });
    assert.equal(job.status, "pending");
    const evs = await events(job);
    await Promise.all(blockers.map((b) => b.result));

    const types = evs.map((e) => e.type);
    assert.equal(types[0], "accepted");
    assert.equal(types.at(-1), "result");
    for (const t of ["queued", "started", "log", "progress"]) assert.ok(types.includes(t), `${t} in ${types}`);
    assert.ok(types.indexOf("queued") < types.indexOf("started"));
    assert.ok(evs.every((e) => e.id === job.id));

    const queued = evs.filter((e) => e.type === "queued");
    assert.ok(queued.some((q) => q.position >= 1), `a position behind another job: ${JSON.stringify(queued)}`);
    assert.ok(queued.every((q, i) => i === 0 || q.position <= queued[i - 1].position), "positions only fall");
    assert.ok(queued.every((q) => Number.isInteger(q.queueSize) && (q.eta === null || q.eta >= 0)));

    const logs = evs.filter((e) => e.type === "log");
    assert.deepEqual(logs[0], { type: "log", id: job.id, level: "info", title: "ZeroGPU queue", message: "Waiting for a GPU to become available" });
    assert.equal(logs[1].level, "success");

    const progress = evs.filter((e) => e.type === "progress");
    assert.deepEqual(progress.map((p) => p.steps[0].index), [0, 1, 2, 3, 4]);
    assert.deepEqual(progress.map((p) => p.fraction), [0, 0.2, 0.4, 0.6, 0.8]);
    assert.equal(progress[0].steps[0].length, 5);
    assert.equal(progress[0].steps[0].unit, "steps");

    const result = evs.at(-1);
    await assertPNG(result.data[0]);
    assert.equal(result.outputs.image, result.data[0]);
    assert.deepEqual(JSON.parse(result.outputs.info), { token: JSON.parse(result.data[1]).token, prompt: "a red fox in snow", steps: 5 });
    assert.ok(result.duration >= 0);
    assert.equal(job.status, "completed");
    assert.equal(job.done, true);
    const r = await job.result;
    assert.equal(r.data[0], result.data[0]);
    assert.equal(r.duration, result.duration);
  });

  test("a /preview generator: partials with their files, then the result; every loop sees every event", T, async () => {
    const c = await open();
    const job = c.submit("/preview", { prompt: "previews", steps: 3 });
    const [a, b] = await Promise.all([events(job), events(job)]);
    const late = await events(job); // a loop begun after the end
    assert.deepEqual(a, b);
    assert.deepEqual(a, late);
    // Three previews: the first two as partials, the last once, as the result (issue 12, item 3).
    const partials = a.filter((e) => e.type === "partial");
    assert.equal(partials.length, 2);
    for (const p of partials) await assertPNG(p.data[0]);
    assert.notEqual(partials[0].data[0].size, partials[1].data[0].size, "each preview is its own file");
    await assertPNG((await job.result).outputs.image);
  });

  test("positional data, and an endpoint without inputs", T, async () => {
    const c = await open();
    const { data } = await c.predict("/generate", ["positional", 2]);
    assert.equal(JSON.parse(data[1]).steps, 2);
    const count = await c.predict("/count", []);
    assert.deepEqual(count.data, [1]);
    assert.deepEqual((await c.predict("/count", {})).outputs, { count: 2 });
  });

  test("cancel a running job and a queued one", T, async () => {
    const c = await open();
    // Two jobs submitted together may reach the upstream queue in either
    // order: the second is submitted once the first runs.
    const running = c.submit("/generate", { prompt: "long", steps: 100 });
    for await (const ev of running) if (ev.type === "progress") break;
    const queued = c.submit("/generate", { prompt: "queued", steps: 100 });
    for await (const ev of queued) if (ev.type === "queued") break;
    assert.equal(running.status, "started");
    assert.equal(queued.status, "queued");
    await withTimeout(Promise.all([queued.cancel(), running.cancel()]), 10_000, "cancel");
    for (const job of [running, queued]) {
      assert.equal(job.status, "cancelled");
      assert.equal((await events(job)).at(-1).type, "cancelled");
      await assert.rejects(job.result, (err) => err instanceof SpaceRelayError && err.code === "cancelled");
    }
    await running.cancel(); // a finished job: nothing to do, and no error
    const { data } = await c.predict("/generate", { prompt: "after cancel", steps: 1 });
    await assertPNG(data[0]);
  });

  test("errors: unknown endpoint, quota with retryAfter, the app's own error, invalid input, too many jobs", T, async () => {
    const c = await open({ maxWaiting: 0 }); // no waiting here: the relay's own too_many_jobs
    const check = async (job, code, more = {}) => {
      const evs = await events(job);
      const last = evs.at(-1);
      assert.equal(last.type, "error");
      assert.ok(last.error instanceof Error && last.error instanceof SpaceRelayError);
      assert.equal(last.error.name, "SpaceRelayError");
      assert.equal(last.error.code, code, last.error.message);
      assert.equal(last.error.jobId, job.id);
      for (const [k, v] of Object.entries(more)) {
        if (v instanceof RegExp) assert.match(String(last.error[k]), v);
        else assert.equal(last.error[k], v);
      }
      await assert.rejects(job.result, (err) => err === last.error);
      assert.equal(job.status, "error");
      return last.error;
    };
    await check(c.submit("/nope", { prompt: "x" }), "unknown_endpoint", { retryAfter: null });
    const quota = await check(c.submit("/generate", { prompt: "too long", steps: 3600 }), "quota_exceeded", {
      title: "ZeroGPU quota exceeded", message: /exceeded your free ZeroGPU quota/,
    });
    assert.ok(Number.isInteger(quota.retryAfter) && quota.retryAfter > 0, `retryAfter ${quota.retryAfter}`);
    await check(c.submit("/generate", { prompt: "raise:a unicorn" }), "upstream_error", { title: "Bad prompt", message: "Cannot draw a unicorn" });
    await check(c.submit("/generate", { prompt: "x", colour: "red" }), "invalid_input");
    const jobs = [1, 2, 3].map((i) => c.submit("/generate", { prompt: `many ${i}`, steps: 1 }));
    await check(jobs[2], "too_many_jobs");
    await Promise.all([jobs[0].result, jobs[1].result]);
  });

  test("over max_jobs, a submit waits here and is sent when a job ends; cancel of a waiting one never reaches the relay", T, async () => {
    const c = await open();
    assert.equal(c.limits.maxJobs, 2);
    const jobs = [1, 2, 3, 4].map((i) => c.submit("/generate", { prompt: `waits ${i}`, steps: 2 }));
    await jobs[3].cancel();
    const evs = await Promise.all(jobs.slice(0, 3).map((j) => events(j)));
    assert.deepEqual(evs.map((e) => e.at(-1).type), ["result", "result", "result"]);
    assert.deepEqual(evs[2][0], { type: "waiting", id: jobs[2].id, position: 0, reason: "jobs" });
    assert.ok(evs[0].every((e) => e.type !== "waiting"));
    assert.equal(jobs[3].status, "cancelled");
    assert.equal(c.waiting, 0);
  });

  test("an upload to the relay: progress in chunks, then uploaded; the session goes on", T, async (t) => {
    const c = await open();
    assert.ok(c.features.includes("upload"), `features ${c.features}`);
    const chunk = c.limits.uploadChunkBytes;
    assert.ok(chunk > 0);
    const size = 3 * chunk + 123;
    const progress = [];
    const up = c.upload(new File([new Uint8Array(size).fill(7)], "zeros.png", { type: "image/png" }), { onProgress: (p) => progress.push(p.loaded) });
    const err = await up.done.then(() => null, (e) => e);
    assert.equal(err, null, err?.message);
    assert.equal(up.status, "uploaded");
    assert.match(up.id, /^u\d+$/);
    assert.equal(progress.at(-1), size);
    assert.deepEqual(progress, [...progress].sort((a, b) => a - b), "progress only grows");
    await assertPNG((await c.predict("/generate", { prompt: "after an upload", steps: 1 })).data[0]);
    await assert.rejects(c.predict("/generate", { prompt: new File([new Uint8Array(c.limits.maxUploadBytes + 1)], "big.bin") }), { code: "file_too_large" });
  });

  test("inputs the relay would refuse are refused here, and the session goes on", T, async () => {
    const sockets = [];
    const c = await open({ WebSocket: tokenWS(sockets) });
    const big = c.submit("/generate", { prompt: "x".repeat(70_000) });
    assert.equal(big.done, true);
    await assert.rejects(big.result, { code: "bad_request", message: /over the relay's limit of 65536/ });
    const cyclic = {};
    cyclic.self = cyclic;
    await assert.rejects(c.submit("/generate", cyclic).result, { code: "bad_request" });
    assert.equal(c.state, "open");
    assert.equal(sockets.length, 1);
    await c.predict("/generate", { prompt: "still here", steps: 1 });
  });

  test("close(): unfinished jobs end with 'closed'; later submits with 'not_connected'", T, async () => {
    const c = await open();
    const states = [];
    c.on("statechange", (d) => states.push(d.state));
    const job = c.submit("/generate", { prompt: "closing", steps: 50 });
    for await (const ev of job) if (ev.type === "started") break;
    c.close();
    assert.equal(c.state, "closed");
    assert.deepEqual(states, ["closed"]);
    await assert.rejects(job.result, { code: "closed", closeCode: 1000 });
    assert.equal((await events(job)).at(-1).error.code, "closed");
    await assert.rejects(c.submit("/generate", { prompt: "late" }).result, { code: "not_connected" });
    await assert.rejects(c.ping(), { code: "not_connected" });
  });

  test("1008 (a flood of bad messages): jobs end with an error, the client reconnects", T, async () => {
    const sockets = [];
    const c = await open({ WebSocket: tokenWS(sockets), ...FAST });
    const first = c.session;
    const errors = [];
    c.on("error", (e) => errors.push(e));
    const job = c.submit("/generate", { prompt: "flooded", steps: 50 });
    const reconnecting = nextState(c, "reconnecting");
    for (let i = 0; i < 20; i++) sockets[0].send('{"type":"nonsense"}');
    const d = await reconnecting;
    assert.equal(d.code, 1008);
    assert.equal(d.attempt, 1);
    assert.ok(d.delay > 0);
    await assert.rejects(job.result, { code: "connection_lost", closeCode: 1008 });
    assert.ok(errors.length > 0 && errors.every((e) => e.code === "bad_request"), "the bad messages' errors came as events");
    await nextState(c, "open");
    assert.notEqual(c.session, first);
    assert.equal(sockets.length, 2);
    await c.predict("/generate", { prompt: "after the flood", steps: 1 });
  });

  test("1009 (a message over the limit): no reconnection", T, async () => {
    const sockets = [];
    const c = await open({ WebSocket: tokenWS(sockets), ...FAST });
    const closed = nextState(c, "closed");
    sockets[0].send(JSON.stringify({ type: "ping", pad: "x".repeat(70_000) }));
    const d = await closed;
    assert.equal(d.code, 1009);
    assert.equal(d.error.code, "connection_lost");
    await sleep(300);
    assert.equal(sockets.length, 1, "no second socket");
  });
});

describe("spacerelay.js when the relay goes away", () => {
  let relay;
  after(stopAll);

  test("SIGTERM (1001): jobs in flight end with an error, and the client reconnects to the restarted relay", T, async () => {
    relay = await startRelay();
    const c = await connect(relay.wsURL, { WebSocket: tokenWS(), ...FAST });
    try {
      const states = [];
      c.on("statechange", (d) => states.push(d));
      const hellos = [];
      c.on("hello", (h) => hellos.push(h));
      const first = c.session;
      const job = c.submit("/generate", { prompt: "in flight", steps: 200 });
      for await (const ev of job) if (ev.type === "progress") break;

      await relay.stop(); // SIGTERM: sessions close with 1001
      await assert.rejects(withTimeout(job.result, 5000, "the job's end"), (err) => {
        assert.equal(err.code, "connection_lost");
        assert.equal(err.closeCode, 1001);
        assert.equal(err.jobId, job.id);
        return true;
      });
      assert.equal(states[0].state, "reconnecting");
      assert.equal(states[0].code, 1001);
      assert.equal(c.state, "reconnecting");
      const meanwhile = c.submit("/generate", { prompt: "meanwhile", steps: 1 }); // waits for the connection
      await sleep(600); // attempts fail while nothing listens; the client keeps trying
      assert.equal(meanwhile.status, "waiting");

      relay = await startRelay({ port: relay.port });
      await waitFor(() => c.state === "open", 10_000, "the client to reconnect");
      const attempts = states.filter((s) => s.state === "reconnecting").map((s) => s.attempt);
      assert.ok(attempts.length >= 2, `attempts ${attempts}`);
      assert.deepEqual(attempts, attempts.map((_, i) => i + 1));
      assert.ok(states.filter((s) => s.state === "reconnecting").every((s) => s.delay <= 400));
      assert.equal(hellos.length, 1);
      assert.notEqual(c.session, first);
      const { data } = await c.predict("/generate", { prompt: "after restart", steps: 1 });
      await assertPNG(data[0]);
      await assertPNG((await meanwhile.result).data[0]);
    } finally {
      c.close();
      await relay.stop();
    }
  });

  test("the relay is killed (1006) and restarted: the lost job ends connection_lost, the client reconnects by itself, and retry() runs it again", T, async () => {
    relay = await startRelay();
    const c = await connect(relay.wsURL, { WebSocket: tokenWS(), ...FAST });
    try {
      const job = c.submit("/generate", { prompt: "killed", steps: 200 });
      for await (const ev of job) if (ev.type === "progress") break;
      const reconnecting = nextState(c, "reconnecting");
      await relay.kill("SIGKILL");
      await assert.rejects(withTimeout(job.result, 5000, "the job's end"), { code: "connection_lost", closeCode: 1006 });
      assert.equal((await reconnecting).code, 1006);
      relay = await startRelay({ port: relay.port });
      await waitFor(() => c.state === "open", 10_000, "the client to reconnect");
      const again = job.retry();
      assert.deepEqual(again.inputs, { prompt: "killed", steps: 200 });
      for await (const ev of again) if (ev.type === "progress") break;
      await again.cancel();
      assert.equal(again.status, "cancelled");
    } finally {
      c.close();
      await relay.stop();
    }
  });
});

describe("spaceStatus: what /readyz says of the Space, with a title for people", () => {
  test("ready, waiting for an unreachable Space, and a relay that does not answer", T, async () => {
    const ready = await startRelay();
    const down = await startRelay({ args: ["--upstream", "http://127.0.0.1:9"], ready: false });
    try {
      const r = await spaceStatus(ready.url + "/v1/ws");
      assert.deepEqual([r.ready, r.state, r.title, r.retryAfter], [true, "ready", "The Space is ready", null]);
      let d;
      await waitFor(async () => (d = await spaceStatus(down.wsURL)).state === "unavailable", 15000, "/readyz unavailable");
      assert.equal(d.ready, false);
      assert.equal(d.title, "The Space is unavailable");
      assert.match(d.message, /Space/);
      assert.equal(typeof d.retryAfter, "number");
    } finally {
      await ready.stop();
      await down.stop();
    }
    const gone = await spaceStatus("ws://127.0.0.1:9/v1/ws"); // nothing listens
    assert.deepEqual([gone.ready, gone.state, gone.title, gone.message], [false, "unavailable", "The Space is unavailable", ""]);
  });
});

describe("refusals by the relay, as close codes (section 1)", () => {
  after(stopAll);

  test("4401 without a token, 4429 over the per-token limit, 4503 at the relay's limit: errors a page can read", T, async () => {
    const relay = await startRelay({ args: ["--token-policy", "require", "--max-sessions-per-token", "1", "--max-sessions", "2"] });
    try {
      const noToken = await connect(relay.wsURL, { WebSocket }).then(() => null, (err) => err);
      assert.equal(noToken.code, "missing_token");
      assert.equal(noToken.closeCode, 4401);
      const tok = tokenWS();
      const first = await connect(relay.wsURL, { WebSocket: tok });
      const second = new Client(relay.wsURL, { WebSocket: tok });
      const refused = await nextState(second, "reconnecting");
      assert.equal(refused.error.code, "too_many_sessions");
      assert.equal(refused.error.closeCode, 4429);
      assert.ok(refused.error.retryAfter > 0);
      assert.ok(refused.delay >= refused.error.retryAfter * 1000);
      second.close();
      const other = await connect(relay.wsURL, { WebSocket: tokenWS() });
      const full = new Client(relay.wsURL, { WebSocket: tokenWS() });
      const busy = await nextState(full, "reconnecting");
      assert.equal(busy.error.code, "over_capacity");
      assert.equal(busy.error.closeCode, 4503);
      full.close();
      first.close();
      other.close();
    } finally {
      await relay.stop();
    }
  });
});

describe("the module over HTTP", () => {
  let relay;
  before(async () => { relay = await startRelay({ args: ["--allowed-origins", "app.example.com:8443"] }); });
  after(() => relay?.stop());

  test("GET /spacerelay.js and /spacerelay.d.ts: CORS for an allowed origin, none for another", T, async () => {
    for (const path of ["/spacerelay.js", "/spacerelay.d.ts"]) {
      const ok = await fetch(relay.url + path, { headers: { Origin: "https://app.example.com:8443" } });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get("access-control-allow-origin"), "https://app.example.com:8443", path);
      assert.match(ok.headers.get("vary") ?? "", /Origin/i);
      const other = await fetch(relay.url + path, { headers: { Origin: "https://evil.example.com" } });
      assert.equal(other.status, 200);
      assert.equal(other.headers.get("access-control-allow-origin"), null, path);
    }
  });

  test("the module the relay serves is this one, as JavaScript", T, async () => {
    const res = await fetch(relay.url + "/spacerelay.js");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /javascript/);
    const { readFile } = await import("node:fs/promises");
    assert.equal(await res.text(), await readFile(new URL("../spacerelay.js", import.meta.url), "utf8"));
  });
});
