// spacerelay.js: the JavaScript client of spacerelay, browser protocol
// version 1 (PROTOCOL.md). One ES module, no dependencies, no build step.
//
//	import { connect } from "/spacerelay.js";
//	const client = await connect("/v1/ws");
//	const job = client.submit("/generate", { prompt: "a red fox in snow" });
//	for await (const ev of job) console.log(ev.type, ev);
//	const { data } = await job.result; // files are File objects (Blobs)
//
// Types are in spacerelay.d.ts beside this file.

/** The protocol version this module speaks. */
export const PROTOCOL = 1;
/** The WebSocket subprotocol offered to the relay. */
export const SUBPROTOCOL = "spacerelay.v1";

const DEFAULTS = {
  protocols: [SUBPROTOCOL],
  connectTimeout: 10_000,
  pingInterval: 20_000,
  pingTimeout: 10_000,
};

const RECONNECT = {
  retries: Infinity,
  minDelay: 500,
  maxDelay: 30_000,
  factor: 2,
  codes: [1001, 1008, 1011], // PROTOCOL.md section 7
};

/** What the close codes of PROTOCOL.md section 7 mean, for messages. */
const CLOSE_REASONS = {
  1000: "closed normally",
  1001: "the relay is shutting down or restarting",
  1006: "the connection broke",
  1008: "the relay closed the connection (policy)",
  1009: "a message was over the relay's size limit",
  1011: "the relay had an internal error",
};

/**
 * An error of the relay (the code of an `error` message) or of this client
 * (connection_failed, connection_lost, closed, not_connected, timeout,
 * bad_request for inputs it cannot send, protocol).
 */
export class SpaceRelayError extends Error {
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "SpaceRelayError";
    this.code = code;
    this.title = details.title ?? null;
    this.retryAfter = details.retryAfter ?? null;
    this.jobId = details.jobId ?? null;
    this.closeCode = details.closeCode ?? null;
    this.closeReason = details.closeReason ?? null;
  }
}

function errorFromMessage(m) {
  const retry = Number.isFinite(m.retry_after) ? m.retry_after : null;
  return new SpaceRelayError(String(m.code || "internal"), String(m.message || m.code || "error"), {
    title: m.title || null,
    retryAfter: retry,
    jobId: m.id ?? null,
  });
}

function closeError(code, closeCode, closeReason) {
  const why = closeReason || CLOSE_REASONS[closeCode] || `close code ${closeCode}`;
  const msg = code === "closed" ? "the client was closed" : `the connection to the relay was lost: ${why}`;
  return new SpaceRelayError(code, msg, { closeCode, closeReason: closeReason || null });
}

/**
 * Connects to a relay and resolves once its hello has arrived. url may be
 * relative to the page ("/v1/ws"), or absolute with ws, wss, http or https.
 */
export async function connect(url = "/v1/ws", options = {}) {
  const client = new Client(url, options);
  await client.ready;
  return client;
}

// Names of the Job methods the Client calls; not part of the API.
const PUSH = Symbol("push");
const END = Symbol("end");
const FILES = Symbol("files");
const NAMED = Symbol("named");

/**
 * One connection to a relay, reconnected when the relay says so. Use
 * connect() to make one. Events: "statechange", "hello", "error".
 */
export class Client extends EventTarget {
  // Static after construction.
  #url;
  #opts;
  #reconnect;
  #WebSocket;
  // The connection.
  #ws = null;
  #state = "connecting";
  #hello = null;
  #opened = false; // a hello has arrived on some socket
  #closing = false; // close() was called
  #attempt = 0;
  #timers = { connect: 0, ping: 0, pong: 0, retry: 0 };
  #pings = []; // resolvers of outstanding pings, oldest first
  #pendingFile = null; // a file message waiting for its binary frame
  // Jobs.
  #jobs = new Map();
  #seq = 0;
  #ready;

  constructor(url = "/v1/ws", options = {}) {
    super();
    this.#url = wsURL(url);
    this.#opts = { ...DEFAULTS, ...options };
    this.#reconnect = options.reconnect === false ? null : { ...RECONNECT, ...(options.reconnect || {}) };
    this.#WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this.#WebSocket !== "function") {
      throw new TypeError("spacerelay: no WebSocket here: pass options.WebSocket (in Node 20, the ws package) or run Node with --experimental-websocket");
    }
    this.#ready = new Promise((resolve, reject) => {
      this.addEventListener("hello", () => resolve(this), { once: true });
      this.addEventListener("statechange", (e) => {
        if (e.detail.state === "closed" && !this.#opened) reject(e.detail.error);
      });
    });
    this.#ready.catch(() => {});
    this.#dial();
  }

  /** Resolves with the client after the first hello; rejects if it never came. */
  get ready() { return this.#ready; }
  /** "connecting", "open", "reconnecting" or "closed". */
  get state() { return this.#state; }
  /** The ws: or wss: URL connected to. */
  get url() { return this.#url; }
  /** The session id of the current (or last) connection. */
  get session() { return this.#hello?.session ?? null; }
  get protocol() { return this.#hello?.protocol ?? null; }
  get endpoints() { return this.#hello?.endpoints ?? []; }
  get limits() { return this.#hello?.limits ?? null; }
  get token() { return this.#hello?.token ?? null; }

  /** The endpoint called name, or undefined. */
  endpoint(name) {
    return this.endpoints.find((e) => e.name === name);
  }

  /**
   * Adds listener for type and returns a function that removes it. The
   * listener gets the event's detail.
   */
  on(type, listener) {
    const fn = (e) => listener(e.detail);
    this.addEventListener(type, fn);
    return () => this.removeEventListener(type, fn);
  }

  /**
   * Submits a job: inputs is an object keyed by parameter name or an array
   * of positional data. The endpoint may be left out (submit(inputs)) when
   * the relay has a default. Never throws: a job that cannot be sent ends
   * at once with an error.
   */
  submit(endpoint, inputs) {
    if (typeof endpoint !== "string" && endpoint !== undefined && endpoint !== null) {
      [endpoint, inputs] = [undefined, endpoint];
    }
    const id = `j${++this.#seq}`;
    const job = new Job(id, endpoint ?? null, this.endpoint(endpoint)?.outputs ?? [], (j) => this.#cancel(j));
    const refusal = this.#send(id, endpoint, inputs ?? {});
    if (refusal) job[END](refusal);
    else this.#jobs.set(id, job);
    return job;
  }

  /** submit(endpoint, inputs).result. */
  predict(endpoint, inputs) {
    return this.submit(endpoint, inputs).result;
  }

  /**
   * Sends an app-level ping and resolves with the round trip in
   * milliseconds; rejects if the connection ends first.
   */
  ping() {
    if (this.#state !== "open") return Promise.reject(new SpaceRelayError("not_connected", `cannot ping: the client is ${this.#state}`));
    const start = now();
    return new Promise((resolve, reject) => {
      this.#pings.push({ resolve: () => resolve(now() - start), reject });
      this.#ws.send('{"type":"ping"}');
    });
  }

  /**
   * Closes the connection (code 1000) for good. Unfinished jobs end with
   * an error of code "closed"; no reconnection follows.
   */
  close() {
    if (this.#closing) return;
    this.#closing = true;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      detach(ws);
      try { ws.close(1000); } catch { /* already closing */ }
    }
    this.#lost(closeError("closed", 1000, "closed by the client"));
  }

  // #send checks and sends a submit; it returns the error that refuses it.
  #send(id, endpoint, inputs) {
    if (this.#state !== "open") {
      return new SpaceRelayError("not_connected", `cannot submit: the client is ${this.#state}`, { jobId: id });
    }
    if (!Array.isArray(inputs) && (typeof inputs !== "object" || inputs instanceof Blob)) {
      return new SpaceRelayError("bad_request", "inputs must be an object keyed by parameter name or an array", { jobId: id });
    }
    if (Object.values(inputs).some((v) => v instanceof Blob)) {
      return new SpaceRelayError("bad_request", "file inputs are not supported by protocol version 1", { jobId: id });
    }
    const msg = { type: "submit", id };
    if (endpoint) msg.endpoint = endpoint;
    msg[Array.isArray(inputs) ? "data" : "inputs"] = inputs;
    let text;
    try {
      text = JSON.stringify(msg);
    } catch (err) {
      return new SpaceRelayError("bad_request", `the inputs cannot be sent as JSON: ${err.message}`, { jobId: id, cause: err });
    }
    const size = new TextEncoder().encode(text).length;
    const max = this.limits?.maxMessageBytes;
    if (max && size > max) {
      return new SpaceRelayError("bad_request", `the inputs are ${size} bytes as JSON, over the relay's limit of ${max}`, { jobId: id });
    }
    this.#ws.send(text);
    return null;
  }

  #cancel(job) {
    if (this.#jobs.get(job.id) === job && this.#state === "open") {
      this.#ws.send(JSON.stringify({ type: "cancel", id: job.id }));
    }
  }

  #setState(state, detail = {}) {
    const previous = this.#state;
    this.#state = state;
    this.dispatchEvent(new CustomEvent("statechange", { detail: { state, previous, ...detail } }));
  }

  #dial() {
    let ws;
    try {
      ws = new this.#WebSocket(this.#url, this.#opts.protocols);
    } catch (err) {
      queueMicrotask(() => this.#closed(null, 1006, err.message));
      return;
    }
    this.#ws = ws;
    ws.binaryType = "blob";
    if (ws.binaryType !== "blob") ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => ws === this.#ws && this.#message(e.data);
    ws.onclose = (e) => ws === this.#ws && this.#closed(ws, e.code, e.reason);
    ws.onerror = () => {}; // a close event follows
    this.#timers.connect = setTimeout(() => this.#drop(ws, "no hello from the relay in time"), this.#opts.connectTimeout);
  }

  // #drop abandons a socket that does not answer, as if it had closed
  // abnormally: waiting for its close event may take minutes.
  #drop(ws, reason) {
    if (ws !== this.#ws) return;
    detach(ws);
    try { ws.close(); } catch { /* ignore */ }
    this.#closed(ws, 1006, reason);
  }

  #closed(ws, code, reason) {
    if (ws) detach(ws);
    this.#ws = null;
    this.#stopTimers();
    const err = closeError(this.#opened ? "connection_lost" : "connection_failed", code, reason);
    if (!this.#opened) err.message = `could not connect to ${this.#url}: ${reason || CLOSE_REASONS[code] || `close code ${code}`}`;
    this.#failJobs(err);
    const retrying = this.#state === "reconnecting" || this.#reconnect?.codes.includes(code);
    if (!this.#opened || !this.#reconnect || !retrying || this.#attempt >= this.#reconnect.retries) {
      this.#closing = true;
      this.#setState("closed", { code, reason, error: err });
      return;
    }
    this.#attempt++;
    const r = this.#reconnect;
    const step = this.#attempt - 1 + (code === 1008 ? 2 : 0); // 1008: back off more at once
    const base = Math.min(r.maxDelay, r.minDelay * r.factor ** step);
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    this.#timers.retry = setTimeout(() => this.#dial(), delay);
    this.#setState("reconnecting", { code, reason, error: err, attempt: this.#attempt, delay });
  }

  // #lost ends everything after close().
  #lost(err) {
    this.#stopTimers();
    this.#failJobs(err);
    this.#setState("closed", { code: err.closeCode, reason: err.closeReason, error: err });
  }

  #failJobs(err) {
    this.#pendingFile = null;
    const jobs = [...this.#jobs.values()];
    this.#jobs.clear();
    for (const job of jobs) {
      job[END](new SpaceRelayError(err.code, err.message, { jobId: job.id, closeCode: err.closeCode, closeReason: err.closeReason }));
    }
    for (const p of this.#pings.splice(0)) p.reject(new SpaceRelayError(err.code, err.message, { closeCode: err.closeCode }));
  }

  #stopTimers() {
    clearTimeout(this.#timers.connect);
    clearInterval(this.#timers.ping);
    clearTimeout(this.#timers.pong);
    clearTimeout(this.#timers.retry);
  }

  // #keepalive pings every pingInterval; a connection that sends nothing
  // for pingTimeout after a ping is dropped.
  #keepalive() {
    const { pingInterval, pingTimeout } = this.#opts;
    if (!(pingInterval > 0)) return;
    const ws = this.#ws;
    this.#timers.ping = setInterval(() => {
      if (ws !== this.#ws || this.#timers.pong) return;
      this.#timers.pong = setTimeout(() => this.#drop(ws, "ping timeout"), pingTimeout);
      this.ping().catch(() => {});
    }, pingInterval);
  }

  #message(data) {
    clearTimeout(this.#timers.pong); // anything from the relay shows it is alive
    this.#timers.pong = 0;
    if (typeof data !== "string") {
      this.#binary(data);
      return;
    }
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      this.#protocolError("the relay sent a text frame that is not JSON");
      return;
    }
    if (this.#pendingFile) {
      this.#pendingFile = null;
      this.#protocolError("the relay sent a message where a file's bytes were due");
    }
    if (m.type === "hello") this.#onHello(m);
    else if (m.type === "pong") this.#pings.shift()?.resolve();
    else if (m.type === "error" && m.id == null) this.dispatchEvent(new CustomEvent("error", { detail: errorFromMessage(m) }));
    else this.#jobMessage(m);
  }

  #onHello(m) {
    clearTimeout(this.#timers.connect);
    if (m.protocol !== PROTOCOL) {
      this.#reconnect = null; // another version will not change by retrying
      const ws = this.#ws;
      detach(ws);
      try { ws.close(1000); } catch { /* ignore */ }
      this.#closed(ws, 1000, `the relay speaks protocol ${m.protocol}, this client ${PROTOCOL}`);
      return;
    }
    this.#hello = {
      protocol: m.protocol,
      session: m.session,
      endpoints: Array.isArray(m.endpoints) ? m.endpoints : [],
      limits: {
        maxJobs: m.limits?.max_jobs ?? null,
        maxMessageBytes: m.limits?.max_message_bytes ?? null,
        maxFileBytes: m.limits?.max_file_bytes ?? null,
      },
      token: { present: !!m.token?.present, expiresAt: m.token?.expires_at ? new Date(m.token.expires_at) : null },
    };
    this.#opened = true;
    this.#attempt = 0;
    this.#keepalive();
    this.#setState("open", { session: m.session });
    this.dispatchEvent(new CustomEvent("hello", { detail: this.#hello }));
  }

  #jobMessage(m) {
    const job = this.#jobs.get(m.id);
    if (!job) return; // a job that ended here already (a cancel racing its end)
    switch (m.type) {
      case "file":
        this.#pendingFile = { job, id: String(m.file), name: String(m.name || m.file), mime: String(m.mime || "application/octet-stream") };
        return;
      case "error":
        if (m.code === "unknown_job") return; // the cancel of a job whose end is already here
        this.#end(job, errorFromMessage(m));
        return;
      case "result":
      case "cancelled":
        this.#end(job, m);
        return;
    }
    const ev = jobEvent(m, job);
    if (ev) job[PUSH](ev);
  }

  #end(job, m) {
    this.#jobs.delete(job.id);
    job[END](m instanceof Error ? m : jobEvent(m, job));
  }

  #binary(data) {
    const f = this.#pendingFile;
    this.#pendingFile = null;
    if (!f) return; // bytes no file message announced: nothing refers to them
    const parts = Array.isArray(data) ? data : [data]; // ws's "fragments"
    f.job[FILES].set(f.id, makeFile(parts, f.name, f.mime));
  }

  #protocolError(message) {
    this.dispatchEvent(new CustomEvent("error", { detail: new SpaceRelayError("protocol", message) }));
  }
}

/**
 * One job. It is an async iterable of its events, from the first, ending
 * after its terminal event (result, error or cancelled); every loop over
 * it sees every event. Breaking out of a loop does not cancel the job.
 */
export class Job {
  #id;
  #endpoint;
  #outputs;
  #cancel;
  #status = "pending";
  #events = [];
  #wake = [];
  #done = false;
  #result;
  #settle;
  #ended;

  constructor(id, endpoint, outputs, cancel) {
    this.#id = id;
    this.#endpoint = endpoint;
    this.#outputs = outputs;
    this.#cancel = cancel;
    this[FILES] = new Map();
    this.#result = new Promise((resolve, reject) => { this.#settle = { resolve, reject }; });
    this.#result.catch(() => {}); // a job nobody awaits must not be an unhandled rejection
    this.#ended = new Promise((resolve) => { this.#settle.ended = resolve; });
  }

  get id() { return this.#id; }
  get endpoint() { return this.#endpoint; }
  /** pending, accepted, queued, started, completed, error or cancelled. */
  get status() { return this.#status; }
  get done() { return this.#done; }
  /** The outputs: resolves on result, rejects with a SpaceRelayError otherwise. */
  get result() { return this.#result; }

  /**
   * Asks the relay to cancel the job and resolves when the job has ended,
   * with cancelled, or with its result or error if that was on its way.
   */
  cancel() {
    if (!this.#done) this.#cancel(this);
    return this.#ended;
  }

  [Symbol.asyncIterator]() {
    let i = 0;
    const next = async () => {
      while (i >= this.#events.length) {
        if (this.#done) return { value: undefined, done: true };
        await new Promise((resolve) => this.#wake.push(resolve));
      }
      return { value: this.#events[i++], done: false };
    };
    return {
      next,
      return: async () => { i = Infinity; return { value: undefined, done: true }; },
      [Symbol.asyncIterator]() { return this; },
    };
  }

  [PUSH](ev) {
    if (this.#done) return;
    if (ev.type === "accepted" || ev.type === "queued" || ev.type === "started") this.#status = ev.type;
    this.#events.push(ev);
    for (const wake of this.#wake.splice(0)) wake();
  }

  // [END] ends the job with its terminal event, or with an error.
  [END](end) {
    if (this.#done) return;
    const ev = end instanceof Error ? { type: "error", id: this.#id, error: end } : end;
    this[PUSH](ev);
    this.#status = ev.type === "result" ? "completed" : ev.type;
    this.#done = true;
    this[FILES].clear();
    if (ev.type === "result") this.#settle.resolve({ data: ev.data, outputs: ev.outputs, duration: ev.duration });
    else if (ev.type === "error") this.#settle.reject(ev.error);
    else this.#settle.reject(new SpaceRelayError("cancelled", "the job was cancelled", { jobId: this.#id }));
    this.#settle.ended();
    for (const wake of this.#wake.splice(0)) wake();
  }

  // [NAMED] names outputs by the endpoint's output names from hello.
  [NAMED](data) {
    const out = {};
    this.#outputs.forEach((o, i) => { if (o?.name && !(o.name in out) && i < data.length) out[o.name] = data[i]; });
    return out;
  }
}

// jobEvent turns a relay message into a job event.
function jobEvent(m, job) {
  const id = job.id;
  switch (m.type) {
    case "accepted":
      return { type: "accepted", id };
    case "queued":
      return { type: "queued", id, position: num(m.position), queueSize: num(m.queue_size), eta: num(m.eta) };
    case "started":
      return { type: "started", id, eta: num(m.eta) };
    case "progress": {
      const steps = (Array.isArray(m.steps) ? m.steps : []).map((s) => ({
        index: num(s.index), length: num(s.length), unit: s.unit ?? null, progress: num(s.progress), desc: s.desc ?? null,
      }));
      return { type: "progress", id, steps, fraction: fraction(steps) };
    }
    case "log":
      return { type: "log", id, level: String(m.level || "info"), title: m.title || null, message: String(m.message ?? "") };
    case "partial":
    case "result": {
      const data = withFiles(Array.isArray(m.data) ? m.data : [], job[FILES]);
      const ev = { type: m.type, id, data, outputs: job[NAMED](data) };
      if (m.type === "result") ev.duration = num(m.duration);
      return ev;
    }
    case "cancelled":
      return { type: "cancelled", id };
  }
  return null; // a type this version does not know
}

function num(v) {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

// fraction is the share of the job done, from its outermost progress step.
function fraction(steps) {
  const s = steps[0];
  if (!s) return null;
  if (s.progress != null) return clamp(s.progress);
  if (s.index != null && s.length) return clamp(s.index / s.length);
  return null;
}

function clamp(x) {
  return Math.min(1, Math.max(0, x));
}

// withFiles returns a copy of v with each {"file": id} replaced by its
// File; a gallery item {"file": id, "caption": c} becomes {file, caption}.
// Each file is used once: the relay sends a file again for each message.
function withFiles(v, files) {
  if (Array.isArray(v)) return v.map((x) => withFiles(x, files));
  if (v === null || typeof v !== "object") return v;
  const keys = Object.keys(v);
  if (typeof v.file === "string" && files.has(v.file) && keys.every((k) => k === "file" || k === "caption")) {
    const f = files.get(v.file);
    files.delete(v.file);
    return keys.length === 1 ? f : { file: f, caption: v.caption };
  }
  const out = {};
  for (const k of keys) out[k] = withFiles(v[k], files);
  return out;
}

function makeFile(parts, name, type) {
  if (typeof File === "function") return new File(parts, name, { type });
  const b = new Blob(parts, { type });
  Object.defineProperty(b, "name", { value: name, enumerable: true });
  return b;
}

function detach(ws) {
  if (!ws) return;
  ws.onmessage = ws.onclose = ws.onerror = null;
}

function now() {
  return globalThis.performance?.now() ?? Date.now();
}

function wsURL(url) {
  const base = globalThis.location?.href;
  const u = base ? new URL(String(url), base) : new URL(String(url));
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  else if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new TypeError(`spacerelay: not a WebSocket URL: ${url}`);
  u.hash = "";
  return u.href;
}
