// Tests of spacerelay.js against a fake relay (../testing/fakerelay.js)
// that speaks the documented messages: refusals by close code, reconnects,
// local waiting, token refresh and uploads, as PROTOCOL.md sections 1, 6,
// 7 and 9 say. Where the real relay does the same, client.test.js checks
// it there too.

import { describe, test, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { connect, Client, SpaceRelayError, Upload } from "../spacerelay.js";
import { startFake, json } from "../testing/fakerelay.js";
import { withTimeout, waitFor } from "../testing/relay.js";

const T = { timeout: 20_000 };
const FAST = { WebSocket, reconnect: { minDelay: 20, maxDelay: 100 } };

/** All events of a job, bounded in time. */
function events(job, ms = 10_000) {
  return withTimeout((async () => {
    const out = [];
    for await (const ev of job) out.push(ev);
    return out;
  })(), ms, `the end of job ${job.id}`);
}

/** The next event of a job matching pred. */
async function nextEvent(job, pred, ms = 5000) {
  const match = typeof pred === "function" ? pred : (e) => e.type === pred;
  return withTimeout((async () => {
    for await (const ev of job) if (match(ev)) return ev;
    throw new Error(`job ${job.id} ended without a ${pred.name || pred} event`);
  })(), ms, `a ${pred.name || pred} event of ${job.id}`);
}

function nextState(client, state, ms = 5000) {
  return withTimeout(new Promise((resolve) => {
    const off = client.on("statechange", (d) => { if (d.state === state) { off(); resolve(d); } });
  }), ms, `state ${state}`);
}

function nextToken(client, ms = 5000) {
  return withTimeout(new Promise((resolve) => {
    const off = client.on("token", (d) => { off(); resolve(d); });
  }), ms, "a token event");
}

/** Answers each submit of sock by the function reply(submit, send). */
function answer(sock, reply) {
  sock.ws.on("message", (raw, isBinary) => {
    if (isBinary) return;
    const m = JSON.parse(String(raw));
    if (m.type === "submit") sock.afterUploads(m, () => reply(m, (o) => sock.send({ id: m.id, ...o })));
  });
}

const result = (send, data = ["ok"]) => { send({ type: "accepted" }); send({ type: "result", data, duration: 0.1 }); };

describe("spacerelay.js against a fake relay", () => {
  let fake;
  const clients = [];
  const open = async (opts = {}) => {
    const c = await connect(fake.url, { ...FAST, ...opts });
    clients.push(c);
    return c;
  };
  before(async () => { fake = await startFake(); });
  beforeEach(() => {
    for (const c of clients.splice(0)) c.close();
    fake.sockets.length = 0;
    fake.refreshes.length = 0;
    fake.onConnection = (sock) => sock.hello();
    fake.onRefresh = (req, res) => json(res, 404, { error: { code: "unknown_session", message: "no such session" } });
  });
  after(async () => {
    for (const c of clients) c.close();
    await fake.close();
  });

  describe("refusals and failures a page can read (section 1, 7)", () => {
    const cases = [
      { close: [4401, "missing_token"], code: "missing_token", retryAfter: null, retried: false, message: /needs a visitor token/ },
      { close: [4429, "too_many_sessions retry_after=1"], code: "too_many_sessions", retryAfter: 1, retried: true, message: /close one/ },
      { close: [4503, "over_capacity retry_after=1"], code: "over_capacity", retryAfter: 1, retried: true, message: /full/ },
      { close: [4503, "shutting_down retry_after=1"], code: "shutting_down", retryAfter: 1, retried: true, message: /restarting/ },
      { close: [4503, "upstream_unavailable retry_after=1"], code: "upstream_unavailable", retryAfter: 1, retried: true, message: /asleep or starting/ },
      { close: [4503, ""], code: "over_capacity", retryAfter: null, retried: true, message: /full/ }, // a reason that says nothing: the code's meaning
    ];
    for (const tc of cases) {
      test(`${tc.close[0]} "${tc.close[1]}" is a SpaceRelayError ${tc.code}${tc.retried ? ", retried after retry_after" : ", never retried"}`, T, async () => {
        let n = 0;
        fake.onConnection = (sock) => { if (++n === 1) sock.ws.close(...tc.close); else sock.hello(); };
        const c = new Client(fake.url, FAST);
        clients.push(c);
        const first = await withTimeout(new Promise((resolve) => c.on("statechange", resolve)), 5000, "the refusal");
        const err = first.error;
        assert.ok(err instanceof SpaceRelayError);
        assert.equal(err.code, tc.code);
        assert.equal(err.closeCode, tc.close[0]);
        assert.equal(err.retryAfter, tc.retryAfter);
        assert.match(err.message, tc.message);
        if (!tc.retried) {
          assert.equal(first.state, "closed");
          await assert.rejects(c.ready, (e) => e === err);
          await new Promise((r) => setTimeout(r, 150));
          assert.equal(n, 1, "no second attempt");
          return;
        }
        assert.equal(first.state, "reconnecting");
        if (tc.retryAfter) assert.ok(first.delay >= tc.retryAfter * 1000, `delay ${first.delay} waits out retry_after`);
        const job = c.submit("/echo", { prompt: "while refused" }); // waits for the connection
        assert.equal((await nextEvent(job, "waiting")).reason, "connection");
        await withTimeout(c.ready, 5000, "the connection after the refusal");
        assert.equal(n, 2);
        const submit = await fake.sockets[1].next("submit");
        assert.equal(submit.id, job.id);
      });
    }

    test("a socket that fails before it opens: connection_failed, saying unreachable or origin not allowed", T, async () => {
      await assert.rejects(connect("ws://127.0.0.1:9/v1/ws", FAST), (err) => {
        assert.equal(err.code, "connection_failed");
        assert.equal(err.closeCode, 1006);
        assert.match(err.message, /unreachable, or it does not allow this page's origin/);
        return true;
      });
    });

    test("refused with 4401 while reconnecting: jobs waiting end with missing_token, and the client closes", T, async () => {
      let n = 0;
      fake.onConnection = (sock) => { if (++n === 1) sock.hello(); else sock.ws.close(4401, "missing_token"); };
      const c = await open();
      const reconnecting = nextState(c, "reconnecting");
      const closed = nextState(c, "closed");
      fake.sockets[0].ws.terminate();
      await reconnecting;
      const job = c.submit("/echo", { prompt: "x" });
      const d = await closed;
      assert.equal(d.error.code, "missing_token");
      await assert.rejects(job.result, { code: "missing_token", closeCode: 4401 });
    });
  });

  describe("reconnect by default (section 7)", () => {
    for (const [how, end] of [["1006 (no close frame)", (s) => s.ws.terminate()], ["1011", (s) => s.ws.close(1011)], ["1001", (s) => s.ws.close(1001)]]) {
      test(`after ${how}: a sent job ends connection_lost, the client reconnects, and retry() sends the same inputs`, T, async () => {
        fake.onConnection = (sock) => sock.hello({ session: `s${fake.sockets.length}` });
        const c = await open();
        const inputs = { prompt: "lost", steps: [1, { deep: true }] };
        const job = c.submit("/echo", inputs);
        await fake.sockets[0].next("submit");
        const reconnecting = nextState(c, "reconnecting");
        end(fake.sockets[0]);
        const d = await reconnecting;
        assert.equal(d.attempt, 1);
        await assert.rejects(job.result, { code: "connection_lost", closeCode: d.code });
        await nextState(c, "open");
        assert.equal(c.session, "s2");
        answer(fake.sockets[1], (m, send) => result(send, [m.inputs]));
        const again = job.retry();
        assert.notEqual(again.id, job.id);
        assert.deepEqual(again.inputs, inputs);
        assert.deepEqual((await again.result).data, [inputs]);
      });
    }

    test("1000 and 1009: no reconnection", T, async () => {
      for (const code of [1000, 1009]) {
        fake.sockets.length = 0;
        const c = await open();
        const closed = nextState(c, "closed");
        fake.sockets[0].ws.close(code);
        assert.equal((await closed).code, code);
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(fake.sockets.length, 1);
      }
    });

    test("backoff grows with each failed attempt, jittered within each step", T, async () => {
      fake.onConnection = (sock) => (fake.sockets.length === 1 ? sock.hello() : sock.ws.terminate());
      const c = await open({ reconnect: { minDelay: 10, maxDelay: 80, factor: 2 } });
      const delays = [];
      c.on("statechange", (d) => d.state === "reconnecting" && delays.push(d));
      fake.sockets[0].ws.terminate();
      await waitFor(() => delays.length >= 5, 5000, "five attempts");
      c.close();
      const steps = [10, 20, 40, 80, 80];
      delays.slice(0, 5).forEach((d, i) => {
        assert.equal(d.attempt, i + 1);
        assert.ok(d.delay >= steps[i] / 2 && d.delay <= steps[i], `attempt ${i + 1}: ${d.delay} in [${steps[i] / 2}, ${steps[i]}]`);
      });
    });

    test("close() while reconnecting stops it for good", T, async () => {
      fake.onConnection = (sock) => (fake.sockets.length === 1 ? sock.hello() : sock.ws.terminate());
      const c = await open();
      const reconnecting = nextState(c, "reconnecting");
      fake.sockets[0].ws.terminate();
      await reconnecting;
      const waiting = c.submit("/echo", {});
      c.close();
      await assert.rejects(waiting.result, { code: "closed" });
      const n = fake.sockets.length;
      await new Promise((r) => setTimeout(r, 250));
      assert.equal(fake.sockets.length, n);
    });
  });

  describe("client-side waiting (max_jobs)", () => {
    test("submits over max_jobs wait here with their position, go out in order, and cancel without a word to the relay", T, async () => {
      const c = await open();
      const sock = fake.sockets[0];
      const jobs = [1, 2, 3, 4].map((i) => c.submit("/echo", { prompt: `p${i}` }));
      const [a, b, d3, d4] = jobs;
      await sock.next((m) => m.type === "submit" && m.id === b.id);
      assert.deepEqual(await nextEvent(d3, "waiting"), { type: "waiting", id: d3.id, position: 0, reason: "jobs" });
      assert.deepEqual(await nextEvent(d4, "waiting"), { type: "waiting", id: d4.id, position: 1, reason: "jobs" });
      assert.equal(d3.status, "waiting");
      assert.equal(c.waiting, 2);
      await d3.cancel();
      assert.equal(d3.status, "cancelled");
      await assert.rejects(d3.result, { code: "cancelled" });
      assert.deepEqual((await nextEvent(d4, (e) => e.type === "waiting" && e.position === 0)).position, 0);
      sock.send({ type: "result", id: a.id, data: ["a"], duration: 1 });
      const s4 = await sock.next((m) => m.type === "submit" && m.id !== a.id);
      assert.equal(s4.id, d4.id);
      assert.deepEqual(s4.inputs, { prompt: "p4" });
      assert.deepEqual(sock.sent("submit").map((m) => m.id), [a.id, b.id, d4.id], "the cancelled one never reached the relay");
      assert.equal(sock.sent("cancel").length, 0);
      assert.deepEqual((await a.result).data, ["a"]);
    });

    test("the wait list is bounded (maxWaiting): one over it ends with too_many_jobs at once", T, async () => {
      const c = await open({ maxWaiting: 2 });
      const jobs = [1, 2, 3, 4, 5].map((i) => c.submit("/echo", { prompt: `p${i}` }));
      assert.equal(jobs[4].done, true);
      await assert.rejects(jobs[4].result, { code: "too_many_jobs", message: /2 jobs are already waiting/ });
      assert.equal(c.waiting, 2);
    });

    test("maxWaiting 0: no waiting here; the relay's own too_many_jobs, and not_connected while reconnecting", T, async () => {
      const c = await open({ maxWaiting: 0 });
      const sock = fake.sockets[0];
      answer(sock, (m, send) => { if (sock.sent("submit").length > 2) send({ type: "error", code: "too_many_jobs", message: "two already" }); });
      const jobs = [1, 2, 3].map((i) => c.submit("/echo", { prompt: `p${i}` }));
      await assert.rejects(jobs[2].result, { code: "too_many_jobs", message: "two already" });
      const reconnecting = nextState(c, "reconnecting");
      sock.ws.terminate();
      await reconnecting;
      await assert.rejects(c.submit("/echo", {}).result, { code: "not_connected" });
    });

    test("a submit while reconnecting waits, and goes out on the new connection", T, async () => {
      const c = await open();
      const reconnecting = nextState(c, "reconnecting");
      fake.sockets[0].ws.terminate();
      await reconnecting;
      const job = c.submit("/echo", { prompt: "meanwhile" });
      assert.equal((await nextEvent(job, "waiting")).reason, "connection");
      await nextState(c, "open");
      answer(fake.sockets[1], (m, send) => result(send));
      assert.deepEqual((await job.result).data, ["ok"]);
      assert.equal(fake.sockets[1].sent("submit")[0].id, job.id);
    });

    test("jobs waiting for a slot are kept when the connection drops; jobs sent are not resubmitted", T, async () => {
      const c = await open();
      const jobs = [1, 2, 3].map((i) => c.submit("/echo", { prompt: `p${i}` }));
      await fake.sockets[0].next((m) => m.type === "submit" && m.id === jobs[1].id);
      fake.sockets[0].ws.terminate();
      await assert.rejects(jobs[0].result, { code: "connection_lost" });
      await assert.rejects(jobs[1].result, { code: "connection_lost" });
      await nextState(c, "open");
      answer(fake.sockets[1], (m, send) => result(send));
      await jobs[2].result;
      assert.deepEqual(fake.sockets[1].sent("submit").map((m) => m.id), [jobs[2].id]);
    });
  });

  describe("token refresh (section 6)", () => {
    const refreshable = (expiresIn, url = "/v1/sessions/s1/token", key = "k".repeat(43)) =>
      ({ token: { present: true, expires_at: "2030-01-02T03:04:05Z", expires_in: expiresIn, refresh: { url, key } } });

    test("token_expiring: the client POSTs the refresh URL with its key and no body, and counts the new lifetime down", T, async () => {
      fake.onConnection = (sock) => sock.hello(refreshable(100));
      fake.onRefresh = (req, res) => json(res, 200, { expires_at: "2030-01-02T03:09:05Z", expires_in: 300 });
      const c = await open();
      assert.equal(c.token.present, true);
      assert.ok(c.token.expiresIn <= 100 && c.token.expiresIn >= 99, `expiresIn ${c.token.expiresIn}`);
      assert.equal(c.token.refreshable, true);
      assert.equal(JSON.stringify(c.token).includes("kkkk"), false, "the key is not exposed");
      const ev = nextToken(c);
      fake.sockets[0].send({ type: "token_expiring", expires_in: 30 });
      const d = await ev;
      assert.equal(d.refreshed, true);
      assert.ok(d.expiresIn <= 300 && d.expiresIn >= 299);
      assert.deepEqual(d.expiresAt, new Date("2030-01-02T03:09:05Z"));
      assert.equal(fake.refreshes.length, 1);
      const r = fake.refreshes[0];
      assert.equal(r.url, "/v1/sessions/s1/token");
      assert.equal(r.headers.authorization, `Bearer ${"k".repeat(43)}`);
      assert.equal(r.body, "");
      assert.equal(r.headers["content-length"] ?? "0", "0");
      assert.ok(c.token.expiresIn >= 299);
    });

    test("a submit whose token has expired by the relay's reckoning: one refresh first, then the submit", T, async () => {
      fake.onConnection = (sock) => sock.hello(refreshable(0));
      fake.onRefresh = (req, res) => json(res, 200, { expires_at: null, expires_in: 120 });
      const c = await open();
      assert.equal(c.token.expiresIn, 0);
      const jobs = [c.submit("/echo", { prompt: "a" }), c.submit("/echo", { prompt: "b" })];
      const sock = fake.sockets[0];
      await sock.next("submit");
      await sock.next("submit");
      assert.equal(fake.refreshes.length, 1, "two submits, one refresh");
      assert.equal(fake.refreshes[0].at, 0, "the refresh came before any submit");
      assert.equal(c.token.expiresIn >= 119, true);
      for (const j of jobs) assert.equal(j.done, false);
    });

    test("a failed refresh is reported (an event, and on the next job), and not retried in a loop", T, async () => {
      fake.onConnection = (sock) => sock.hello(refreshable(10));
      const c = await open();
      const sock = fake.sockets[0];
      const ev = nextToken(c);
      sock.send({ type: "token_expiring", expires_in: 0 });
      const d = await ev;
      assert.equal(d.refreshed, false);
      assert.equal(d.error.code, "token_refresh_failed");
      assert.equal(d.error.status, 404);
      assert.equal(d.error.cause.code, "unknown_session");
      assert.match(d.error.message, /could not be renewed.*Reload the page/);
      assert.equal(c.token.error, d.error);
      await c.ping();
      assert.equal(fake.refreshes.length, 1, "no second attempt by itself");
      // The next job: one more attempt before its submit, and its token_expired says why.
      answer(sock, (m, send) => send({ type: "error", code: "token_expired", message: "the visitor's token has expired" }));
      const job = c.submit("/echo", { prompt: "late" });
      await assert.rejects(job.result, (err) => {
        assert.equal(err.code, "token_expired");
        assert.equal(err.cause.code, "token_refresh_failed");
        assert.match(err.message, /could not be renewed/);
        return true;
      });
      assert.equal(fake.refreshes.length, 2);
    });

    test("429 from the refresh route is waited out once", T, async () => {
      fake.onConnection = (sock) => sock.hello(refreshable(60));
      let n = 0;
      fake.onRefresh = (req, res) => (++n === 1
        ? json(res, 429, { error: { code: "rate_limited", message: "one a second" } }, { "Retry-After": "1" })
        : json(res, 200, { expires_at: null, expires_in: 120 }));
      const c = await open();
      const ev = nextToken(c);
      fake.sockets[0].send({ type: "token_expiring", expires_in: 30 });
      assert.equal((await ev).refreshed, true);
      assert.equal(fake.refreshes.length, 2);
    });

    test("twice 429: reported, not retried again", T, async () => {
      fake.onConnection = (sock) => sock.hello(refreshable(60));
      fake.onRefresh = (req, res) => json(res, 429, { error: { code: "rate_limited", message: "one a second" } }, { "Retry-After": "1" });
      const c = await open();
      const ev = nextToken(c);
      fake.sockets[0].send({ type: "token_expiring", expires_in: 30 });
      const d = await ev;
      assert.equal(d.error.cause.code, "rate_limited");
      assert.equal(fake.refreshes.length, 2);
    });

    test("the connection drops while a refresh waits out a 429: the wait ends, and the next connection refreshes and submits", T, async () => {
      fake.onConnection = (sock) => {
        const n = fake.sockets.length;
        sock.hello({ session: `s${n}`, ...refreshable(n === 1 ? 60 : 0, `/v1/sessions/s${n}/token`, `key${n}`) });
      };
      fake.onRefresh = (req, res) => (fake.refreshes.length === 1
        ? json(res, 429, { error: { code: "rate_limited", message: "one a second" } }, { "Retry-After": "1" })
        : json(res, 200, { expires_at: null, expires_in: 120 }));
      let got429;
      const waiting = new Promise((resolve) => { got429 = resolve; });
      const c = await open({ fetch: async (...args) => {
        const res = await fetch(...args);
        if (res.status === 429) setTimeout(got429, 20); // the client has read it, and waits
        return res;
      } });
      fake.sockets[0].send({ type: "token_expiring", expires_in: 30 });
      await withTimeout(waiting, 5000, "the 429");
      fake.sockets[0].ws.terminate();
      await nextState(c, "open");
      assert.equal(c.token.expiresIn, 0, "the new session's token has expired");
      answer(fake.sockets[1], (m, send) => result(send));
      const job = c.submit("/echo", { prompt: "after the drop" });
      await fake.sockets[1].next("submit");
      assert.deepEqual(fake.refreshes.map((r) => r.url), ["/v1/sessions/s1/token", "/v1/sessions/s2/token"]);
      assert.deepEqual((await job.result).data, ["ok"]);
      await new Promise((r) => setTimeout(r, 1200)); // past the old wait's Retry-After
      assert.equal(fake.refreshes.length, 2, "the old session's refresh was given up");
    });

    test("a refresh request that never answers fails after refreshTimeout; the next one runs", T, async () => {
      fake.onConnection = (sock) => sock.hello(refreshable(60));
      fake.onRefresh = () => {}; // holds the request
      const c = await open({ refreshTimeout: 300 });
      const ev = nextToken(c, 3000);
      fake.sockets[0].send({ type: "token_expiring", expires_in: 30 });
      const d = await ev;
      assert.equal(d.refreshed, false);
      assert.equal(d.error.code, "token_refresh_failed");
      assert.match(d.error.message, /the relay did not answer/);
      fake.onRefresh = (req, res) => json(res, 200, { expires_at: null, expires_in: 120 });
      assert.equal(await withTimeout(c.refreshToken(), 3000, "a second refresh"), true);
      assert.equal(fake.refreshes.length, 2);
    });

    test("refreshTimeout given as undefined, 0 or Infinity: refreshes still work", T, async () => {
      fake.onConnection = (sock) => sock.hello(refreshable(60));
      fake.onRefresh = (req, res) => json(res, 200, { expires_at: null, expires_in: 120 });
      for (const refreshTimeout of [undefined, 0, Infinity]) {
        const c = await open({ refreshTimeout });
        assert.equal(await withTimeout(c.refreshToken(), 3000, `a refresh with refreshTimeout ${refreshTimeout}`), true, `refreshTimeout ${refreshTimeout}`);
        c.close();
      }
    });

    test("the connection drops while a refresh request hangs: the next connection's submit does not wait for it", T, async () => {
      fake.onConnection = (sock) => {
        const n = fake.sockets.length;
        sock.hello({ session: `s${n}`, ...refreshable(n === 1 ? 60 : 0, `/v1/sessions/s${n}/token`, `key${n}`) });
      };
      fake.onRefresh = (req, res) => { if (fake.refreshes.length > 1) json(res, 200, { expires_at: null, expires_in: 120 }); }; // the first hangs
      const c = await open();
      fake.sockets[0].send({ type: "token_expiring", expires_in: 30 });
      await waitFor(() => fake.refreshes.length === 1, 5000, "the first refresh request");
      fake.sockets[0].ws.terminate();
      await nextState(c, "open");
      answer(fake.sockets[1], (m, send) => result(send));
      const job = c.submit("/echo", { prompt: "after the drop" });
      await fake.sockets[1].next("submit", 3000); // well before the hung request's refreshTimeout (10 s)
      assert.deepEqual(fake.refreshes.map((r) => r.url), ["/v1/sessions/s1/token", "/v1/sessions/s2/token"]);
      assert.deepEqual((await job.result).data, ["ok"]);
    });

    test("a refresh that brings a token inside the margin: its token_expiring at once is let be; the next submit once it has expired refreshes first", T, async () => {
      const MARGIN = 30;
      let lifetime = 2; // the visitor's tokens live less than the relay's margin
      fake.onConnection = (sock) => sock.hello(refreshable(lifetime));
      fake.onRefresh = (req, res) => {
        json(res, 200, { expires_at: null, expires_in: lifetime });
        // As the relay does: token_expiring at once for a token with less than the margin left.
        if (lifetime <= MARGIN) setTimeout(() => fake.sockets.at(-1).send({ type: "token_expiring", expires_in: lifetime }), 50);
      };
      const c = await open();
      const sock = fake.sockets[0];
      sock.send({ type: "token_expiring", expires_in: lifetime }); // hello's token is as short
      await waitFor(() => fake.refreshes.length === 1, 5000, "the first refresh");
      await new Promise((r) => setTimeout(r, 500));
      await c.ping();
      assert.equal(fake.refreshes.length, 1, "one refresh, not one after each token_expiring");
      await waitFor(() => c.token.expiresIn === 0, 5000, "the token to expire");
      answer(sock, (m, send) => result(send));
      await c.predict("/echo", { prompt: "once it has expired" });
      assert.equal(fake.refreshes.length, 2, "a refresh before the submit");
      assert.ok(fake.refreshes[1].at <= sock.log.indexOf(sock.sent("submit")[0]), "the refresh came before the submit");
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(fake.refreshes.length, 2);
      // A token that outlives the margin: its token_expiring, when it comes, is acted on.
      lifetime = 300;
      assert.equal(await c.refreshToken(), true);
      const ev = nextToken(c);
      sock.send({ type: "token_expiring", expires_in: MARGIN });
      assert.equal((await ev).refreshed, true);
      assert.equal(fake.refreshes.length, 4);
    });

    test("after a reconnect, the new hello's token details replace the old", T, async () => {
      fake.onConnection = (sock) => sock.hello({ session: `s${fake.sockets.length}`, ...refreshable(50 * fake.sockets.length, `/v1/sessions/s${fake.sockets.length}/token`, `key${fake.sockets.length}`) });
      fake.onRefresh = (req, res) => json(res, 200, { expires_at: null, expires_in: 500 });
      const c = await open();
      assert.ok(c.token.expiresIn <= 50);
      fake.sockets[0].ws.terminate();
      await nextState(c, "open");
      assert.ok(c.token.expiresIn > 50 && c.token.expiresIn <= 100);
      const ev = nextToken(c);
      fake.sockets[1].send({ type: "token_expiring", expires_in: 30 });
      await ev;
      assert.equal(fake.refreshes[0].url, "/v1/sessions/s2/token");
      assert.equal(fake.refreshes[0].headers.authorization, "Bearer key2");
    });

    test("no refresh details (a relay before section 6, or no token): no request, ever", T, async () => {
      fake.onConnection = (sock) => sock.hello({ token: { present: false, expires_at: null } });
      const c = await open();
      assert.deepEqual({ ...c.token, error: undefined }, { present: false, expiresAt: null, expiresIn: null, refreshable: false, error: undefined });
      fake.sockets[0].send({ type: "token_expiring", expires_in: 0 });
      assert.equal(await c.refreshToken(), false);
      await c.ping();
      assert.equal(fake.refreshes.length, 0);
    });
  });

  describe("uploads (section 9)", () => {
    const bytesOf = (n, seed = 7) => Uint8Array.from({ length: n }, (_, i) => (i * seed + (i >> 8)) & 255);

    test("a File in inputs: upload, then the submit naming it, then frames of at most upload_chunk_bytes; progress events from the relay", T, async () => {
      const c = await open();
      const sock = fake.sockets[0];
      const data = bytesOf(2500);
      const file = new File([data], "cat.png", { type: "image/png" });
      answer(sock, (m, send) => result(send));
      const job = c.submit("/echo", { image: file, prompt: "restyle" });
      const evs = await events(job);
      const up = sock.sent("upload")[0];
      assert.deepEqual({ ...up, taken: undefined }, { type: "upload", id: up.id, name: "cat.png", mime: "image/png", size: 2500, taken: undefined });
      const submit = sock.sent("submit")[0];
      assert.deepEqual(submit.inputs, { image: { upload: up.id }, prompt: "restyle" });
      const order = sock.log.map((m) => m.type);
      assert.ok(order.indexOf("upload") < order.indexOf("submit"));
      assert.ok(order.indexOf("submit") < order.lastIndexOf("binary"), `the submit does not wait for the bytes: ${order}`);
      const frames = sock.log.filter((m) => m.type === "binary").map((m) => m.data.length);
      assert.deepEqual(frames, [1000, 1000, 500]);
      assert.deepEqual(new Uint8Array(sock.bytes(up.id)), data);
      const ups = evs.filter((e) => e.type === "upload");
      assert.deepEqual(ups.map((e) => e.loaded), [0, 1000, 2000, 2500]);
      assert.ok(ups.every((e) => e.total === 2500 && e.upload === up.id && e.name === "cat.png" && e.id === job.id));
      assert.equal(evs.at(-1).type, "result");
    });

    test("Blobs anywhere: in arrays, in objects, a gallery item with its caption; a Blob twice is uploaded once", T, async () => {
      const c = await open();
      const sock = fake.sockets[0];
      answer(sock, (m, send) => result(send));
      const a = new Blob(["aaa"], { type: "text/plain" });
      const b = new File(["bb"], "b.bin");
      await c.predict("/echo", [[a, { file: b, caption: "second" }], { nested: { deep: a } }, "text"]);
      const [ua, ub] = sock.sent("upload");
      assert.deepEqual([ua.name, ua.mime, ua.size], ["blob", "text/plain", 3]);
      assert.deepEqual([ub.name, ub.mime, ub.size], ["b.bin", "application/octet-stream", 2]);
      assert.equal(sock.sent("upload").length, 2);
      assert.deepEqual(sock.sent("submit")[0].data, [[{ upload: ua.id }, { upload: ub.id, caption: "second" }], { nested: { deep: { upload: ua.id } } }, "text"]);
      assert.equal(sock.bytes(ua.id).toString(), "aaa");
      assert.equal(sock.bytes(ub.id).toString(), "bb");
      const order = sock.log.filter((m) => m.type !== "binary" && m.type !== "submit").map((m) => m.type);
      assert.deepEqual(order, ["upload", "upload"]);
      // One file at a time: the second upload begins after the first's "uploaded".
      const iB = sock.log.indexOf(ub);
      assert.equal(sock.bytes(ua.id).length, 3);
      assert.ok(sock.log.slice(0, iB).filter((m) => m.type === "binary").length === 1);
    });

    test("relay.upload(blob) uploads once for reuse; a result's File goes back as its {file} reference", T, async () => {
      const c = await open();
      const sock = fake.sockets[0];
      let n = 0;
      answer(sock, (m, send) => {
        send({ type: "accepted" });
        send({ type: "file", file: `f${++n}`, name: "out.png", mime: "image/png", size: 3 });
        sock.ws.send(Buffer.from([1, 2, 3]));
        send({ type: "result", data: [{ file: `f${n}` }], duration: 0.1 });
      });
      const blob = new Blob([bytesOf(1500)], { type: "image/png" });
      const progress = [];
      const up = c.upload(blob, { onProgress: (p) => progress.push(p) });
      assert.ok(up instanceof Upload);
      assert.equal(await up.done, up);
      assert.equal(up.status, "uploaded");
      assert.deepEqual(progress.at(-1), { loaded: 1500, total: 1500 });
      const r1 = await c.predict("/echo", { image: up });
      const r2 = await c.predict("/echo", { image: blob });
      await c.predict("/echo", { image: r1.data[0] });
      assert.equal(sock.sent("upload").length, 1);
      const submits = sock.sent("submit").map((m) => m.inputs.image);
      assert.deepEqual(submits, [{ upload: up.id }, { upload: up.id }, { file: "f1" }]);
      assert.ok(r2.data[0] instanceof Blob);
    });

    test("after a reconnect, a File of the old session is uploaded, not referenced", T, async () => {
      const c = await open();
      answer(fake.sockets[0], (m, send) => {
        send({ type: "file", file: "f1", name: "out.png", mime: "image/png", size: 3 });
        fake.sockets[0].ws.send(Buffer.from([1, 2, 3]));
        send({ type: "result", data: [{ file: "f1" }], duration: 0.1 });
      });
      const { data: [out] } = await c.predict("/echo", {});
      fake.sockets[0].ws.terminate();
      await nextState(c, "open");
      const sock = fake.sockets[1];
      answer(sock, (m, send) => result(send));
      await c.predict("/echo", { image: out });
      const up = sock.sent("upload")[0];
      assert.deepEqual([up.name, up.size], ["out.png", 3]);
      assert.deepEqual(sock.sent("submit")[0].inputs.image, { upload: up.id });
    });

    test("over max_upload_bytes or max_session_upload_bytes: file_too_large here, before any byte goes", T, async () => {
      fake.onConnection = (sock) => sock.hello({ limits: { ...sockLimits(), max_upload_bytes: 100, max_session_upload_bytes: 150 } });
      const c = await open();
      const sock = fake.sockets[0];
      answer(sock, (m, send) => result(send));
      await assert.rejects(c.predict("/echo", { image: new Blob([bytesOf(101)]) }), { code: "file_too_large", message: /over the relay's limit of 100 bytes per file/ });
      await c.predict("/echo", { image: new Blob([bytesOf(100)]) });
      await assert.rejects(c.predict("/echo", { image: new Blob([bytesOf(60)]) }), { code: "file_too_large", message: /this session's uploads/ });
      assert.equal(sock.sent("upload").length, 1);
    });

    test("a relay without the upload feature: a Blob input is refused here", T, async () => {
      fake.onConnection = (sock) => sock.hello({ features: undefined });
      const c = await open();
      await assert.rejects(c.predict("/echo", { image: new Blob(["x"]) }), { code: "bad_request", message: /no "upload" feature/ });
      assert.equal(fake.sockets[0].sent("upload").length, 0);
    });

    test("a relay without the upload feature: relay.upload(blob) rejects at once, and sends nothing", T, async () => {
      fake.onConnection = (sock) => sock.hello({ features: ["token_refresh"] });
      const c = await open();
      const up = c.upload(new Blob(["x"]));
      await assert.rejects(withTimeout(up.done, 1000, "the upload's end"), { code: "bad_request", message: /no "upload" feature/ });
      assert.equal(up.status, "error");
      assert.equal(up.id, null);
      const again = c.upload(new Blob(["y"]));
      await assert.rejects(withTimeout(again.done, 1000, "the second upload's end"), { code: "bad_request" });
      await c.ping();
      assert.equal(fake.sockets[0].sent("upload").length, 0);
      assert.equal(fake.sockets[0].log.filter((m) => m.type === "binary").length, 0);
    });

    test("the relay's upload error ends the job", T, async () => {
      const c = await open();
      const sock = fake.sockets[0];
      sock.autoUploads = false;
      const job = c.submit("/echo", { image: new Blob(["abc"]) });
      const up = await sock.next("upload");
      await sock.next("submit");
      sock.send({ type: "error", id: up.id, code: "upstream_unavailable", message: "the Space did not take the file" });
      sock.send({ type: "error", id: job.id, code: "upstream_unavailable", message: "the Space did not take the file" });
      await assert.rejects(job.result, { code: "upstream_unavailable" });
    });

    test("the relay's window: no more than four chunks past the last upload_progress", T, async () => {
      const c = await open();
      const sock = fake.sockets[0];
      sock.holdProgress = true;
      answer(sock, (m, send) => result(send));
      const job = c.submit("/echo", { image: new Blob([bytesOf(9500)]) });
      const up = await sock.next("upload");
      for (let i = 0; i < 4; i++) await sock.next("binary");
      await c.ping();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(sock.log.filter((m) => m.type === "binary").length, 4, "four chunks, then it waits");
      const u = sock.uploads.get(up.id);
      sock.progress(u); // the relay has sent 4000 bytes on: room for four more
      for (let i = 0; i < 4; i++) await sock.next("binary");
      await c.ping();
      assert.equal(sock.log.filter((m) => m.type === "binary").length, 8);
      sock.holdProgress = false;
      sock.progress(u);
      await job.result;
      assert.equal(u.received, 9500);
      assert.equal(u.broken, null);
    });

    test("bufferedAmount is respected: no frame goes while the socket holds two chunks or more", T, async () => {
      const seen = { extra: 0, sends: [] };
      class Slow extends WebSocket {
        get bufferedAmount() { return super.bufferedAmount + seen.extra; }
        send(d, ...rest) {
          if (typeof d !== "string") seen.sends.push({ buffered: this.bufferedAmount, size: d.byteLength });
          return super.send(d, ...rest);
        }
      }
      const c = await open({ WebSocket: Slow });
      const sock = fake.sockets[0];
      answer(sock, (m, send) => result(send));
      seen.extra = 5000; // as if 5 chunks sat in the socket's buffer
      const job = c.submit("/echo", { image: new Blob([bytesOf(4000)]) });
      await sock.next("submit");
      await new Promise((r) => setTimeout(r, 100)); // some looks at the buffer
      assert.equal(seen.sends.length, 0, "nothing sent while the buffer is full");
      seen.extra = 0;
      await job.result;
      assert.equal(seen.sends.length, 4);
    });

    test("a 50 MiB file never sits in the socket's buffer at once", { timeout: 60_000 }, async () => {
      const chunk = 256 * 1024;
      fake.onConnection = (sock) => sock.hello({ limits: { ...sockLimits(), upload_chunk_bytes: chunk } });
      let most = 0;
      class Watch extends WebSocket {
        send(d, ...rest) {
          if (typeof d !== "string") most = Math.max(most, this.bufferedAmount + d.byteLength);
          return super.send(d, ...rest);
        }
      }
      const c = await open({ WebSocket: Watch });
      const sock = fake.sockets[0];
      answer(sock, (m, send) => result(send));
      const size = 50 * 1024 * 1024;
      await c.predict("/echo", { image: new Blob([new Uint8Array(size)]) });
      const up = sock.uploads.get(sock.sent("upload")[0].id);
      assert.equal(up.received, size);
      assert.ok(up.frames.every((f) => f.length <= chunk));
      assert.ok(most <= 3 * chunk, `at most ${most} bytes in the socket's buffer`);
      assert.equal(up.broken, null, "within the relay's window");
    });

    test("cancel stops an upload: a cancel for it, and no frame after", T, async () => {
      const seen = { extra: 0 };
      class Slow extends WebSocket {
        get bufferedAmount() { return super.bufferedAmount + seen.extra; }
      }
      const c = await open({ WebSocket: Slow });
      const sock = fake.sockets[0];
      const job = c.submit("/echo", { image: new Blob([bytesOf(10_000)]) });
      const up = await sock.next("upload");
      await sock.next("binary");
      seen.extra = 1e9; // stall the rest
      const submit = await sock.next("submit");
      const cancelled = job.cancel();
      const c1 = await sock.next("cancel");
      const c2 = await sock.next("cancel");
      assert.deepEqual(new Set([c1.id, c2.id]), new Set([submit.id, up.id]));
      sock.send({ type: "cancelled", id: job.id });
      await cancelled;
      assert.equal(job.status, "cancelled");
      seen.extra = 0;
      const frames = sock.log.filter((m) => m.type === "binary").length;
      await c.ping();
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(sock.log.filter((m) => m.type === "binary").length, frames, "no frame after the cancel");
      assert.ok(sock.log.indexOf(c2) > sock.log.findLastIndex((m) => m.type === "binary"));
    });

    test("cancel of a job still waiting for its upload's turn: nothing of it reaches the relay", T, async () => {
      const c = await open();
      const sock = fake.sockets[0];
      sock.holdUploads = true; // the first upload never ends
      const first = c.submit("/echo", { image: new Blob(["first"]) });
      await sock.next("submit");
      const second = c.submit("/echo", { image: new Blob(["second"]) });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(sock.sent("upload").length, 1, "one file at a time");
      await second.cancel();
      assert.equal(second.status, "cancelled");
      sock.uploaded(sock.uploads.get(sock.sent("upload")[0].id));
      await c.ping();
      assert.equal(sock.sent("upload").length, 1);
      assert.equal(sock.sent("submit").length, 1);
      assert.equal(first.done, false);
    });
  });

  test("gallery captions, unknown message types, and the subprotocol", T, async () => {
    fake.onConnection = (sock) => {
      sock.hello();
      answer(sock, (m, send) => {
        send({ type: "accepted" });
        send({ type: "something_new", extra: 1 }); // a later version's message: ignored
        send({ type: "file", file: "f1", name: "a.png", mime: "image/png", size: 3 });
        sock.ws.send(Buffer.from([1, 2, 3]));
        send({ type: "file", file: "f2", name: "b.txt", mime: "text/plain", size: 2 });
        sock.ws.send(Buffer.from("hi"));
        send({ type: "result", data: [[{ file: "f1", caption: "first" }, { file: "f2", caption: null }], { file: "f9" }], duration: null });
      });
    };
    const c = await open();
    assert.equal(fake.sockets[0].protocol, "spacerelay.v1");
    assert.deepEqual(c.token.expiresAt, new Date("2030-01-02T03:04:05Z"));
    const evs = await events(c.submit("/gallery", []));
    assert.deepEqual(evs.map((e) => e.type), ["accepted", "result"]);
    const [images, n] = evs[1].data;
    assert.equal(images[0].caption, "first");
    assert.deepEqual([...new Uint8Array(await images[0].file.arrayBuffer())], [1, 2, 3]);
    assert.equal(images[0].file.name, "a.png");
    assert.equal(images[1].file.type, "text/plain");
    assert.equal(await images[1].file.text(), "hi");
    assert.deepEqual(n, { file: "f9" }, "a reference to no file is left as it is");
    assert.equal(evs[1].outputs.images, images);
  });

  test("a relay that stops answering: the ping times out, the job ends, and the client reconnects", T, async () => {
    fake.onConnection = (sock) => { sock.pong = false; sock.hello(); }; // and never a pong, nor anything else
    const c = await open({ pingInterval: 100, pingTimeout: 200 });
    const job = c.submit("/gallery", []);
    const d = await nextState(c, "reconnecting");
    assert.equal(d.code, 1006);
    assert.equal(d.reason, "ping timeout");
    await assert.rejects(job.result, { code: "connection_lost", closeCode: 1006, message: /ping timeout/ });
  });

  test("no hello in time: connect rejects", T, async () => {
    fake.onConnection = () => {}; // accepts, says nothing
    await assert.rejects(connect(fake.url, { ...FAST, connectTimeout: 200 }), { code: "connection_failed", message: /no hello/ });
  });

  test("another protocol version: connect rejects and does not retry", T, async () => {
    fake.onConnection = (sock) => sock.send({ type: "hello", protocol: 2, session: "s" });
    await assert.rejects(connect(fake.url, FAST), { code: "connection_failed", message: /protocol 2/ });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(fake.sockets.length, 1);
  });

  test("no WebSocket at all: a clear TypeError", { skip: typeof globalThis.WebSocket === "function" && "this Node has a global WebSocket" }, () => {
    assert.throws(() => new Client(fake.url, { WebSocket: null }), /pass options.WebSocket/);
  });
});

function sockLimits() {
  return { max_jobs: 2, max_message_bytes: 65536, max_file_bytes: 1000, max_upload_bytes: 64 << 20, max_session_upload_bytes: 256 << 20, upload_chunk_bytes: 1000 };
}
