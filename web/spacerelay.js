// spacerelay.js: the JavaScript client of spacerelay, browser protocol
// version 1 (PROTOCOL.md). One ES module, no dependencies, no build step.
//
//	import { connect } from "/spacerelay.js";
//	const relay = await connect("/v1/ws");
//	const job = relay.submit("/restyle", { image: file, prompt: "as a watercolour" });
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
  refreshTimeout: 10_000,
  maxWaiting: 16,
};

const RECONNECT = {
  retries: Infinity,
  minDelay: 500,
  maxDelay: 30_000,
  factor: 2,
  // PROTOCOL.md section 7, and a connection that broke without a close frame.
  codes: [1001, 1006, 1008, 1011, 1012, 1013, 4429, 4503],
};

const UPLOAD_POLL = 10; // ms between looks at a full socket buffer
// The relay holds at most this many chunks of an upload past its last
// upload_progress (PROTOCOL.md section 9): a page sends no more ahead.
const UPLOAD_WINDOW = 4; // a relay's hello.limits.upload_window, if it does not say
const REFRESH_WAIT_MAX = 10; // s: the longest Retry-After of the refresh route waited out

/** What the close codes of PROTOCOL.md section 7 mean, for messages. */
const CLOSE_REASONS = {
  1000: "closed normally",
  1001: "the relay is shutting down or restarting",
  1006: "the connection broke",
  1008: "the relay closed the connection (policy)",
  1009: "a message was over the relay's size limit",
  1011: "the relay had an internal error",
};

/** The refusals of PROTOCOL.md section 1, by close code, and what they mean for people. */
const REFUSAL_CODES = { 4401: "missing_token", 4429: "too_many_sessions", 4503: "over_capacity" };
const REFUSALS = {
  missing_token: "This Space needs a visitor token, and the connection carried none: open the page through its Space, signed in.",
  too_many_sessions: "Too many tabs or windows are connected to this Space for you: close one, and this one connects by itself.",
  over_capacity: "The relay is full right now; it takes new connections again shortly.",
  shutting_down: "The relay is restarting; it takes connections again shortly.",
  upstream_unavailable: "The Space is not ready yet: it may be asleep or starting.",
};

/**
 * An error of the relay (the code of an `error` message or of a refusal)
 * or of this client (connection_failed, connection_lost, closed,
 * not_connected, too_many_jobs for a full wait list, token_refresh_failed,
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
    this.status = details.status ?? null;
  }
}

function errorFromMessage(m, jobId = m.id ?? null) {
  const retry = Number.isFinite(m.retry_after) ? m.retry_after : null;
  return new SpaceRelayError(String(m.code || "internal"), String(m.message || m.code || "error"), {
    title: m.title || null,
    retryAfter: retry,
    jobId,
  });
}

// closeError is why a connection ended: a refusal (4xxx), or the loss of
// a connection that had opened (connection_lost) or never did
// (connection_failed).
function closeError(url, opened, closeCode, closeReason) {
  const details = { closeCode, closeReason: closeReason || null };
  if (closeCode >= 4000 && closeCode < 5000) {
    const m = /^([a-z_]+)(?:\s+retry_after=(\d+))?\s*$/.exec(closeReason || "");
    const code = m?.[1] || REFUSAL_CODES[closeCode] || "refused";
    const message = REFUSALS[code] || `The relay refused the connection (${closeReason || closeCode}).`;
    return new SpaceRelayError(code, message, { ...details, retryAfter: m?.[2] ? Number(m[2]) : null });
  }
  const why = closeReason || CLOSE_REASONS[closeCode] || `close code ${closeCode}`;
  if (opened) return new SpaceRelayError("connection_lost", `the connection to the relay was lost: ${why}`, details);
  return new SpaceRelayError("connection_failed",
    `could not connect to ${url}: the relay is unreachable, or it does not allow this page's origin (${why})`, details);
}

/**
 * Connects to a relay and resolves once its hello has arrived. url may be
 * relative to the page ("/v1/ws"), or absolute with ws, wss, http or https.
 * Refusals that say "retry after" (4429, 4503) are waited out; other
 * failures of the first connection reject.
 */
export async function connect(url = "/v1/ws", options = {}) {
  const client = new Client(url, options);
  await client.ready;
  return client;
}

/**
 * Asks the relay's /readyz what it knows of the Space, with a title for
 * people: while the client waits out a 4503 (upstream_unavailable), a page
 * can say why ("The Space is asleep"). url is the relay's, as for
 * connect(). It never rejects: a relay that does not answer is reported
 * as unavailable.
 */
export async function spaceStatus(url = "/v1/ws") {
  let r = {};
  try {
    const res = await fetch(new URL("/readyz", httpURL(wsURL(url))), { cache: "no-store" });
    r = await res.json();
  } catch {
    // reported below as unavailable, with no message
  }
  const message = typeof r.message === "string" ? r.message : "";
  // A relay before /readyz had stage says it only in its message.
  const stage = String(r.stage || (/asleep|sleeping/i.test(message) ? "SLEEPING" : /paused/i.test(message) ? "PAUSED" : "")).toUpperCase();
  const title = r.ready === true ? "The Space is ready"
    : stage === "SLEEPING" ? "The Space is asleep"
    : stage === "PAUSED" ? "The Space is paused"
    : r.state === "starting" || /BUILD|START/.test(stage) ? "The Space is starting"
    : r.state === "draining" ? "The relay is restarting"
    : "The Space is unavailable";
  return {
    ready: r.ready === true,
    state: typeof r.state === "string" ? r.state : "unavailable",
    stage: stage || null,
    title,
    message,
    retryAfter: typeof r.retry_after === "number" ? r.retry_after : null,
  };
}

// Names of the Job methods the Client calls; not part of the API.
const PUSH = Symbol("push");
const END = Symbol("end");
const FILES = Symbol("files");
const NAMED = Symbol("named");
const CTL = Symbol("ctl");
const SENT = Symbol("sent");

// fileRefs: each File a relay sent, with the client and connection it came
// on and its file id, so that passing it back sends {"file": id}.
const fileRefs = new WeakMap();

/**
 * One connection to a relay, reconnected as PROTOCOL.md section 7 says.
 * Use connect() to make one, or new Client() and its ready promise.
 * Events: "statechange", "hello", "token", "error".
 */
export class Client extends EventTarget {
  // Static after construction.
  #url;
  #opts;
  #reconnect;
  #WebSocket;
  #fetch;
  // The connection.
  #ws = null;
  #conn = 0; // counts connections: work begun on an older one is stale
  #state = "connecting";
  #hello = null;
  #opened = false; // a hello has arrived on some socket
  #closing = false; // close() was called, or the client gave up
  #attempt = 0;
  #timers = { connect: 0, ping: 0, pong: 0, retry: 0, refresh: 0 };
  #pings = []; // resolvers of outstanding pings, oldest first
  #pendingFile = null; // a file message waiting for its binary frame
  // The visitor's token, from hello and the refresh route.
  #token = null; // {present, expiresAt, expiresIn, at, refresh, margin, letBe}
  #refreshing = null; // the refresh in flight
  #refreshWake = null; // ends a refresh's wait out of a 429 early: the connection went
  #tokenError = null; // why the last refresh failed
  // Jobs.
  #seq = 0;
  #waiting = []; // jobs not sent yet: no connection, or max_jobs reached
  #active = new Set(); // jobs holding one of max_jobs: being prepared or sent
  #jobs = new Map(); // jobs sent on this connection, by id
  // Uploads of this connection.
  #uploads = new Map(); // by id
  #uploadQueue = []; // not announced yet, in order
  #uploading = null; // the one whose bytes go now, or whose "uploaded" is due
  #byBlob = new WeakMap(); // Blob → its upload on this connection
  #uploadBytes = 0; // sizes announced on this connection
  #ready;

  constructor(url = "/v1/ws", options = {}) {
    super();
    this.#url = wsURL(url);
    // An option given as undefined (a spread of a config) takes its default.
    this.#opts = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options ?? {}).filter(([, v]) => v !== undefined)) };
    this.#reconnect = options.reconnect === false ? null : { ...RECONNECT, ...(options.reconnect || {}) };
    this.#WebSocket = options.WebSocket || globalThis.WebSocket;
    this.#fetch = options.fetch || globalThis.fetch?.bind(globalThis);
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
  /** The relay's version from hello ("0.3.0"), for bug reports. */
  get relayVersion() { return this.#hello?.relay ?? null; }
  get endpoints() { return this.#hello?.endpoints ?? []; }
  get limits() { return this.#hello?.limits ?? null; }
  get features() { return this.#hello?.features ?? []; }
  /** Jobs waiting here to be sent, oldest first. */
  get waiting() { return this.#waiting.length; }

  /**
   * The visitor's token as the relay sees it: present, expiresAt, and
   * expiresIn (seconds left by the relay's clock, counted down here on the
   * page's monotonic clock), or null before the first hello.
   */
  get token() {
    const t = this.#token;
    if (!t) return null;
    return { present: t.present, expiresAt: t.expiresAt, expiresIn: tokenLeft(t), refreshable: !!t.refresh, error: this.#tokenError };
  }

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
   * of positional data; File and Blob values anywhere in it are uploaded
   * first. The endpoint may be left out (submit(inputs)) when the relay has
   * a default. Never throws: a job that cannot be sent ends at once with an
   * error. Over max_jobs, or while the client reconnects, the job waits
   * here (event "waiting") until it can be sent.
   */
  submit(endpoint, inputs) {
    if (typeof endpoint !== "string" && endpoint !== undefined && endpoint !== null) {
      [endpoint, inputs] = [undefined, endpoint];
    }
    inputs ??= {};
    const id = `j${++this.#seq}`;
    const job = new Job(id, endpoint ?? null, inputs, {
      outputs: () => this.endpoint(endpoint)?.outputs ?? [],
      cancel: (j) => this.#cancel(j),
      retry: (j) => this.submit(j.endpoint, j.inputs),
    });
    const refusal = this.#admit(job);
    if (refusal) job[END](refusal);
    return job;
  }

  /** submit(endpoint, inputs).result. */
  predict(endpoint, inputs) {
    return this.submit(endpoint, inputs).result;
  }

  /**
   * Uploads blob to the session once, for use as an input of later jobs
   * (pass the returned Upload, or the blob itself). options.onProgress
   * gets {loaded, total} as the relay receives the bytes.
   */
  upload(blob, options = {}) {
    if (!(blob instanceof Blob)) throw new TypeError("spacerelay: upload() takes a Blob or a File");
    const handle = new Upload(blob, options);
    if (this.#state !== "open") {
      handle[END](new SpaceRelayError("not_connected", `cannot upload: the client is ${this.#state}`));
      return handle;
    }
    if (!this.features.includes("upload")) {
      handle[END](noUploads());
      return handle;
    }
    const rec = this.#uploadFor(blob, null);
    if (rec instanceof Error) handle[END](rec);
    else handle[CTL](rec, this);
    return handle;
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
   * Refreshes the visitor's token now (PROTOCOL.md section 6): the client
   * does so by itself, so a page rarely needs this. Resolves with true when
   * the relay took a fresh token.
   */
  refreshToken() {
    return this.#refresh();
  }

  /**
   * Closes the connection (code 1000) for good. Unfinished and waiting
   * jobs end with an error of code "closed"; no reconnection follows.
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
    this.#end(new SpaceRelayError("closed", "the client was closed", { closeCode: 1000, closeReason: "closed by the client" }), "closed");
  }

  // Jobs: waiting, preparing, sent.

  // #admit checks a new job and puts it in line; it returns the error
  // that refuses it.
  #admit(job) {
    const inputs = job.inputs;
    if (!Array.isArray(inputs) && (typeof inputs !== "object" || inputs instanceof Blob || inputs instanceof Upload)) {
      return new SpaceRelayError("bad_request", "inputs must be an object keyed by parameter name or an array", { jobId: job.id });
    }
    if (this.#closing || this.#state === "closed") {
      return new SpaceRelayError("not_connected", "cannot submit: the client is closed", { jobId: job.id });
    }
    const max = this.#opts.maxWaiting;
    if (!(max > 0)) { // no waiting here: send now or fail
      if (this.#state !== "open") return new SpaceRelayError("not_connected", `cannot submit: the client is ${this.#state}`, { jobId: job.id });
      this.#active.add(job);
      this.#prepare(job);
      return null;
    }
    if (this.#waiting.length >= max) {
      return new SpaceRelayError("too_many_jobs", `${max} jobs are already waiting to be sent; wait for one to end`, { jobId: job.id });
    }
    this.#waiting.push(job);
    this.#pump();
    return null;
  }

  // #pump starts waiting jobs while there is room, and tells the rest
  // where they stand.
  #pump() {
    const max = this.#hello?.limits.maxJobs;
    while (this.#state === "open" && this.#waiting.length && !(max > 0 && this.#active.size >= max)) {
      const job = this.#waiting.shift();
      this.#active.add(job);
      this.#prepare(job);
    }
    const reason = this.#state === "open" ? "jobs" : "connection";
    this.#waiting.forEach((job, position) => {
      const c = job[CTL];
      if (c.position === position && c.reason === reason) return;
      c.position = position;
      c.reason = reason;
      job[PUSH]({ type: "waiting", id: job.id, position, reason });
    });
  }

  // #prepare makes a job ready and sends it: a fresh token if the old one
  // has expired, its files announced as uploads.
  async #prepare(job) {
    const conn = this.#conn;
    const c = job[CTL];
    c.position = c.reason = null;
    if (this.#tokenExpired()) await this.#refresh();
    if (conn !== this.#conn || job.done) return; // the connection went (the job waits again), or it was cancelled
    let wire;
    try {
      wire = this.#wireInputs(job, job.inputs);
    } catch (err) {
      this.#finish(job, err instanceof SpaceRelayError ? err : new SpaceRelayError("bad_request", err.message, { jobId: job.id, cause: err }));
      return;
    }
    if (c.uploads.size) {
      try {
        await Promise.all([...c.uploads].map((u) => u.announced));
      } catch (err) {
        if (conn === this.#conn && !job.done) this.#finish(job, jobError(err, job.id));
        return;
      }
      if (conn !== this.#conn || job.done) return;
    }
    const refusal = this.#sendSubmit(job, wire);
    if (refusal) this.#finish(job, refusal);
  }

  // #sendSubmit sends a job's submit; it returns the error that refuses it.
  #sendSubmit(job, inputs) {
    if (this.#state !== "open") return new SpaceRelayError("not_connected", `cannot submit: the client is ${this.#state}`, { jobId: job.id });
    const msg = { type: "submit", id: job.id };
    if (job.endpoint) msg.endpoint = job.endpoint;
    msg[Array.isArray(inputs) ? "data" : "inputs"] = inputs;
    let text;
    try {
      text = JSON.stringify(msg);
    } catch (err) {
      return new SpaceRelayError("bad_request", `the inputs cannot be sent as JSON: ${err.message}`, { jobId: job.id, cause: err });
    }
    const size = new TextEncoder().encode(text).length;
    const max = this.limits?.maxMessageBytes;
    if (max && size > max) {
      return new SpaceRelayError("bad_request", `the inputs are ${size} bytes as JSON, over the relay's limit of ${max}`, { jobId: job.id });
    }
    job[CTL].sent = true;
    job[SENT]();
    this.#jobs.set(job.id, job);
    this.#ws.send(text);
    return null;
  }

  // #wireInputs returns inputs with each file replaced by its reference on
  // the wire: {"file": id} for a file of this session, {"upload": id} for
  // a blob (uploaded now, or earlier with upload()).
  #wireInputs(job, v, depth = 0) {
    if (depth > 64) throw new SpaceRelayError("bad_request", "the inputs are nested too deep", { jobId: job.id });
    if (v instanceof Blob || v instanceof Upload) return this.#fileRef(job, v);
    if (Array.isArray(v)) return v.map((x) => this.#wireInputs(job, x, depth + 1));
    if (v === null || typeof v !== "object" || typeof v.toJSON === "function") return v;
    const keys = Object.keys(v);
    if ((v.file instanceof Blob || v.file instanceof Upload) && keys.every((k) => k === "file" || k === "caption")) {
      return { ...this.#fileRef(job, v.file), ...(keys.includes("caption") ? { caption: v.caption } : {}) }; // a gallery item
    }
    const out = {};
    for (const k of keys) out[k] = this.#wireInputs(job, v[k], depth + 1);
    return out;
  }

  #fileRef(job, v) {
    if (!this.features.includes("upload")) throw noUploads(job.id);
    const blob = v instanceof Upload ? v.blob : v;
    const ref = fileRefs.get(blob);
    if (ref && ref.client === this && ref.conn === this.#conn) return { file: ref.id };
    const rec = this.#uploadFor(blob, v instanceof Upload ? null : job);
    if (rec instanceof Error) throw new SpaceRelayError(rec.code, rec.message, { jobId: job.id });
    job[CTL].uploads.add(rec);
    rec.jobs.add(job);
    if (rec.loaded != null) job[PUSH](uploadEvent(job, rec));
    return { upload: rec.id };
  }

  #cancel(job) {
    const c = job[CTL];
    const i = this.#waiting.indexOf(job);
    if (i >= 0) {
      this.#waiting.splice(i, 1);
      job[END]({ type: "cancelled", id: job.id });
      this.#pump();
      return;
    }
    if (!this.#active.has(job)) return;
    if (!c.sent) { // preparing: nothing of it reached the relay but its uploads
      this.#finish(job, { type: "cancelled", id: job.id });
      return;
    }
    if (this.#state === "open") this.#ws.send(JSON.stringify({ type: "cancel", id: job.id }));
    this.#dropUploads(job);
  }

  // #finish ends a job that holds a slot, and lets the next one in.
  #finish(job, end) {
    this.#jobs.delete(job.id);
    this.#active.delete(job);
    this.#dropUploads(job);
    job[END](end);
    this.#pump();
  }

  // Uploads.

  // #uploadFor returns the upload of blob on this connection, begun now if
  // there is none yet; an Error if the blob cannot be uploaded.
  #uploadFor(blob, job) {
    const known = this.#byBlob.get(blob);
    if (known && !known.failed) {
      if (!job) known.pinned = true;
      return known;
    }
    const l = this.limits;
    const name = typeof blob.name === "string" && blob.name ? blob.name : "blob";
    if (l.maxUploadBytes != null && blob.size > l.maxUploadBytes) {
      return new SpaceRelayError("file_too_large", `${name} is ${bytes(blob.size)}, over the relay's limit of ${bytes(l.maxUploadBytes)} per file`);
    }
    if (l.maxSessionUploadBytes != null && this.#uploadBytes + blob.size > l.maxSessionUploadBytes) {
      return new SpaceRelayError("file_too_large", `${name} would take this session's uploads over the relay's limit of ${bytes(l.maxSessionUploadBytes)}`);
    }
    this.#uploadBytes += blob.size;
    const rec = { id: `u${++this.#seq}`, blob, name, mime: blob.type || "application/octet-stream", size: blob.size,
      loaded: null, jobs: new Set(), handles: new Set(), pinned: !job, failed: null, ended: false };
    rec.announced = new Promise((resolve, reject) => { rec.announce = { resolve, reject }; });
    rec.done = new Promise((resolve, reject) => { rec.settle = { resolve, reject }; });
    rec.announced.catch(() => {});
    rec.done.catch(() => {});
    this.#uploads.set(rec.id, rec);
    this.#byBlob.set(blob, rec);
    this.#uploadQueue.push(rec);
    this.#pumpUploads();
    return rec;
  }

  // #pumpUploads announces the next upload once the one before it ended:
  // the relay takes one file at a time.
  #pumpUploads() {
    while (!this.#uploading && this.#uploadQueue.length && this.#state === "open") {
      const rec = this.#uploadQueue.shift();
      if (rec.ended) continue;
      this.#uploading = rec;
      this.#ws.send(JSON.stringify({ type: "upload", id: rec.id, name: rec.name, mime: rec.mime, size: rec.size }));
      rec.loaded = 0;
      rec.announce.resolve();
      this.#uploadProgress(rec);
      this.#sendBytes(rec, this.#ws).catch((err) => {
        if (rec.ended) return;
        if (this.#state === "open") this.#ws.send(JSON.stringify({ type: "cancel", id: rec.id }));
        this.#uploadEnded(rec, new SpaceRelayError("bad_request", `${rec.name} could not be read: ${err?.message || err}`, { cause: err }));
      });
    }
  }

  // #sendBytes sends rec's bytes in frames of upload_chunk_bytes, each
  // only once the relay's window has room for it (upload_window chunks past
  // its last upload_progress) and the socket's buffer has drained below
  // two chunks.
  async #sendBytes(rec, ws) {
    const chunk = this.limits.uploadChunkBytes || 256 * 1024;
    const high = this.#opts.uploadBuffer ?? 2 * chunk;
    const window = this.limits.uploadWindow || UPLOAD_WINDOW;
    const gone = () => rec.ended || ws !== this.#ws;
    for (let off = 0; off < rec.size; off += chunk) {
      const end = Math.min(rec.size, off + chunk);
      while (end - (rec.loaded ?? 0) > window * chunk) {
        await new Promise((resolve) => { rec.wake = resolve; });
        if (gone()) return;
      }
      while (ws.bufferedAmount > high) {
        await sleep(UPLOAD_POLL);
        if (gone()) return;
      }
      const part = await rec.blob.slice(off, end).arrayBuffer();
      if (gone()) return;
      ws.send(part);
    }
  }

  #wake(rec) {
    const wake = rec.wake;
    rec.wake = null;
    wake?.();
  }

  #uploadProgress(rec) {
    this.#wake(rec);
    for (const job of rec.jobs) job[PUSH](uploadEvent(job, rec));
    for (const h of rec.handles) h[PUSH](rec);
  }

  // #uploadEnded ends rec with its outcome: null when uploaded, else an error.
  #uploadEnded(rec, err) {
    if (rec.ended) return;
    rec.ended = true;
    this.#wake(rec);
    if (this.#uploading === rec) this.#uploading = null;
    if (err) {
      rec.failed = err;
      this.#uploads.delete(rec.id);
      if (this.#byBlob.get(rec.blob) === rec) this.#byBlob.delete(rec.blob);
      rec.announce.reject(err);
      rec.settle.reject(err);
      for (const job of rec.jobs) if (!job[CTL].sent && this.#active.has(job)) this.#finish(job, jobError(err, job.id));
    } else {
      if (rec.loaded !== rec.size) {
        rec.loaded = rec.size;
        this.#uploadProgress(rec);
      }
      rec.settle.resolve();
    }
    for (const h of rec.handles) h[END](err);
    this.#pumpUploads();
  }

  // #dropUploads lets go of an ended or cancelled job's uploads: one that
  // no other job and no upload() handle needs is cancelled if unfinished.
  #dropUploads(job) {
    for (const rec of job[CTL].uploads) {
      rec.jobs.delete(job);
      if (rec.jobs.size || rec.pinned || rec.ended) continue;
      this.#cancelUpload(rec);
    }
    job[CTL].uploads.clear();
  }

  #cancelUpload(rec) {
    if (rec.ended) return;
    if (rec.loaded != null && this.#state === "open") this.#ws.send(JSON.stringify({ type: "cancel", id: rec.id }));
    this.#uploadEnded(rec, new SpaceRelayError("cancelled", `the upload of ${rec.name} was cancelled`));
  }

  // [CTL] of Upload handles calls back here.
  [CTL](rec, op) {
    if (op === "cancel") {
      rec.pinned = false;
      if (!rec.jobs.size) this.#cancelUpload(rec);
    }
  }

  // The token.

  #tokenExpired() {
    const left = this.#token ? tokenLeft(this.#token) : null;
    return left !== null && left <= 0 && !!this.#token.refresh;
  }

  // #refresh asks the relay to take the visitor's fresh token (PROTOCOL.md
  // section 6). One at a time; a 429 is waited out once; a failure is
  // reported, never retried here.
  #refresh() {
    if (!this.#token?.refresh || this.#state === "closed") return Promise.resolve(false);
    if (!this.#refreshing) {
      // #lost lets go of a refresh of an older connection: this one must
      // not clear a newer one's when it ends.
      const p = this.#doRefresh().finally(() => { if (this.#refreshing === p) this.#refreshing = null; });
      this.#refreshing = p;
    }
    return this.#refreshing;
  }

  async #doRefresh() {
    const conn = this.#conn;
    const { url, key } = this.#token.refresh;
    // Bounded in time: a request that hangs would hold every submit whose
    // token has expired (they wait for the refresh in flight).
    const post = () => this.#fetch(new URL(url, httpURL(this.#url)), {
      method: "POST", headers: { Authorization: `Bearer ${key}` }, credentials: "same-origin", cache: "no-store",
      signal: timeoutSignal(this.#opts.refreshTimeout),
    });
    let err = null;
    let body = null;
    try {
      let res = await post();
      if (res.status === 429) {
        const wait = Math.min(REFRESH_WAIT_MAX, Math.max(1, Number(res.headers.get("Retry-After")) || 1));
        await new Promise((resolve) => {
          this.#timers.refresh = setTimeout(resolve, wait * 1000);
          this.#refreshWake = resolve; // #lost ends the wait if the connection goes first
        });
        if (conn !== this.#conn) return false;
        res = await post();
      }
      body = await res.json().catch(() => null);
      if (!res.ok) err = refreshError(res.status, body);
    } catch (cause) {
      err = new SpaceRelayError("token_refresh_failed", "Your sign-in for this Space could not be renewed (the relay did not answer). Reload the page to go on.", { cause });
    }
    if (conn !== this.#conn) return false; // a new hello has its own token
    if (err) {
      this.#tokenError = err;
      this.dispatchEvent(new CustomEvent("token", { detail: { ...this.token, refreshed: false, error: err } }));
      return false;
    }
    this.#tokenError = null;
    const expiresIn = num(body?.expires_in);
    const margin = this.#token.margin;
    // letBe: the new token is inside the relay's margin already (see
    // #onTokenExpiring).
    const letBe = expiresIn !== null && margin != null && expiresIn <= margin;
    this.#token = { ...this.#token, expiresAt: body?.expires_at ? new Date(body.expires_at) : null, expiresIn, at: now(), letBe };
    this.dispatchEvent(new CustomEvent("token", { detail: { ...this.token, refreshed: true } }));
    return true;
  }

  // The connection.

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
    const wasOpen = this.#state === "open";
    const err = closeError(this.#url, wasOpen || this.#opened, code, reason);
    this.#lost(wasOpen ? err : null);
    const r = this.#reconnect;
    // A client that never reached a relay gives up, unless the relay said
    // when to come back.
    const retry = r && r.codes.includes(code) && this.#attempt < r.retries && (this.#opened || code === 4429 || code === 4503);
    if (!retry) {
      this.#end(err, "closed", { code, reason });
      return;
    }
    this.#attempt++;
    let delay;
    if (err.retryAfter > 0) delay = Math.round(err.retryAfter * 1000 * (1 + Math.random() / 5));
    else {
      const step = this.#attempt - 1 + (code === 1008 ? 2 : 0); // 1008: back off more at once
      const base = Math.min(r.maxDelay, r.minDelay * r.factor ** step);
      delay = Math.round(base / 2 + Math.random() * base / 2);
    }
    this.#timers.retry = setTimeout(() => this.#dial(), delay);
    this.#setState("reconnecting", { code, reason, error: err, attempt: this.#attempt, delay });
    this.#pump(); // waiting jobs now wait for the connection
  }

  // #lost forgets what the connection held: sent jobs end (connection_lost),
  // jobs not sent yet wait again, uploads fail.
  #lost(err) {
    this.#conn++;
    this.#pendingFile = null;
    // A refresh under way belongs to the session that went (its URL and
    // key): it is abandoned, so that the next connection's hello and submits
    // do not wait for it. A fetch still out ends by itself (refreshTimeout)
    // and is ignored.
    this.#refreshing = null;
    this.#refreshWake?.();
    this.#refreshWake = null;
    const lost = err || new SpaceRelayError("connection_lost", "the connection to the relay was lost");
    const jobs = [...this.#active];
    this.#active.clear();
    this.#jobs.clear();
    const again = [];
    for (const job of jobs) {
      job[CTL].uploads.clear();
      if (job[CTL].sent) job[END](new SpaceRelayError(lost.code, lost.message, { jobId: job.id, closeCode: lost.closeCode, closeReason: lost.closeReason }));
      else again.push(job);
    }
    this.#waiting.unshift(...again);
    for (const rec of this.#uploads.values()) {
      rec.ended = true;
      this.#wake(rec);
      rec.failed = lost;
      rec.announce.reject(lost);
      rec.settle.reject(lost);
      for (const h of rec.handles) h[END](lost);
    }
    this.#uploads.clear();
    this.#uploadQueue = [];
    this.#uploading = null;
    this.#byBlob = new WeakMap();
    this.#uploadBytes = 0;
    for (const p of this.#pings.splice(0)) p.reject(new SpaceRelayError(lost.code, lost.message, { closeCode: lost.closeCode }));
  }

  // #end ends everything for good: every job, waiting or not, ends with err.
  #end(err, state, detail = {}) {
    this.#closing = true;
    this.#stopTimers();
    this.#lost(err);
    for (const job of this.#waiting.splice(0)) {
      job[END](new SpaceRelayError(err.code, err.message, { jobId: job.id, closeCode: err.closeCode, closeReason: err.closeReason, retryAfter: err.retryAfter }));
    }
    this.#setState(state, { code: err.closeCode, reason: err.closeReason, ...detail, error: err });
  }

  #stopTimers() {
    clearTimeout(this.#timers.connect);
    clearInterval(this.#timers.ping);
    clearTimeout(this.#timers.pong);
    clearTimeout(this.#timers.retry);
    clearTimeout(this.#timers.refresh);
    this.#timers.pong = 0;
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

  // Messages from the relay.

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
    else if (m.type === "token_expiring") this.#onTokenExpiring(m);
    else if (m.id != null && this.#uploads.has(m.id)) this.#uploadMessage(this.#uploads.get(m.id), m);
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
    const l = m.limits || {};
    this.#hello = {
      protocol: m.protocol,
      relay: typeof m.relay === "string" ? m.relay : "",
      session: m.session,
      endpoints: Array.isArray(m.endpoints) ? m.endpoints : [],
      limits: {
        maxJobs: num(l.max_jobs),
        maxMessageBytes: num(l.max_message_bytes),
        maxFileBytes: num(l.max_file_bytes),
        maxUploadBytes: num(l.max_upload_bytes),
        maxSessionUploadBytes: num(l.max_session_upload_bytes),
        uploadChunkBytes: num(l.upload_chunk_bytes),
        uploadWindow: num(l.upload_window),
      },
      features: Array.isArray(m.features) ? m.features.map(String) : [],
      token: tokenInfo(m.token),
    };
    const t = m.token || {};
    this.#token = { ...this.#hello.token, expiresIn: num(t.expires_in), at: now(),
      refresh: typeof t.refresh?.url === "string" && typeof t.refresh?.key === "string" ? { url: t.refresh.url, key: t.refresh.key } : null };
    this.#tokenError = null;
    this.#opened = true;
    this.#attempt = 0;
    this.#keepalive();
    this.#setState("open", { session: m.session });
    this.dispatchEvent(new CustomEvent("hello", { detail: this.#hello }));
    this.#pump();
  }

  #onTokenExpiring(m) {
    if (!this.#token) return;
    const left = num(m.expires_in);
    const { letBe, margin } = this.#token;
    // Each token_expiring has at most the relay's margin left, so the most
    // any of them gave is as much as this page can know of the margin.
    if (left !== null) this.#token = { ...this.#token, expiresIn: left, at: now(), margin: Math.max(margin ?? 0, left) };
    this.#token.letBe = false;
    // A refresh that brings a token with no more than that left (the
    // visitor's tokens are that short, or the same expiry came back) is
    // followed at once by token_expiring for the new token. Refreshing on
    // it would only bring the same again, 429s in between: about two
    // requests a second for as long as the page is open. So that one is
    // let be; once the token has expired, the next submit refreshes first
    // (#prepare).
    if (letBe) return;
    this.#refresh();
  }

  #uploadMessage(rec, m) {
    switch (m.type) {
      case "upload_progress": {
        const got = num(m.received);
        if (got !== null && got > (rec.loaded ?? -1)) {
          rec.loaded = Math.min(got, rec.size);
          this.#uploadProgress(rec);
        }
        return;
      }
      case "uploaded":
        this.#uploadEnded(rec, null);
        return;
      case "error":
        if (m.code === "unknown_job") return;
        this.#uploadEnded(rec, errorFromMessage(m, null));
        return;
      case "cancelled":
        this.#uploadEnded(rec, new SpaceRelayError("cancelled", `the upload of ${rec.name} was cancelled`));
    }
  }

  #jobMessage(m) {
    const job = this.#jobs.get(m.id);
    if (!job) return; // a job that ended here already (a cancel racing its end)
    switch (m.type) {
      case "file":
        this.#pendingFile = { job, id: String(m.file), name: String(m.name || m.file), mime: String(m.mime || "application/octet-stream") };
        return;
      case "error": {
        if (m.code === "unknown_job") return; // the cancel of a job whose end is already here
        const err = errorFromMessage(m);
        if (err.code === "token_expired" && this.#tokenError) {
          err.message = `${this.#tokenError.message} (${err.message})`;
          err.cause = this.#tokenError;
        }
        this.#finish(job, err);
        return;
      }
      case "result":
      case "cancelled":
        this.#finish(job, jobEvent(m, job));
        return;
    }
    const ev = jobEvent(m, job);
    if (ev) job[PUSH](ev);
  }

  #binary(data) {
    const f = this.#pendingFile;
    this.#pendingFile = null;
    if (!f) return; // bytes no file message announced: nothing refers to them
    const parts = Array.isArray(data) ? data : [data]; // ws's "fragments"
    const file = makeFile(parts, f.name, f.mime);
    fileRefs.set(file, { client: this, conn: this.#conn, id: f.id });
    f.job[FILES].set(f.id, file);
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
  #inputs;
  #hooks;
  #status = "pending";
  #events = [];
  #wake = [];
  #done = false;
  #result;
  #settle;
  #ended;

  constructor(id, endpoint, inputs, hooks) {
    this.#id = id;
    this.#endpoint = endpoint;
    this.#inputs = inputs;
    this.#hooks = hooks;
    this[FILES] = new Map();
    this[CTL] = { sent: false, uploads: new Set(), position: null, reason: null };
    this.#result = new Promise((resolve, reject) => { this.#settle = { resolve, reject }; });
    this.#result.catch(() => {}); // a job nobody awaits must not be an unhandled rejection
    this.#ended = new Promise((resolve) => { this.#settle.ended = resolve; });
  }

  get id() { return this.#id; }
  get endpoint() { return this.#endpoint; }
  /** The inputs as given to submit. */
  get inputs() { return this.#inputs; }
  /** pending, waiting, uploading, accepted, queued, started, completed, error or cancelled. */
  get status() { return this.#status; }
  get done() { return this.#done; }
  /** The outputs: resolves on result, rejects with a SpaceRelayError otherwise. */
  get result() { return this.#result; }

  /**
   * Cancels the job and resolves when it has ended: with cancelled, or with
   * its result or error if that was on its way. A job still waiting here
   * ends at once, without a word to the relay.
   */
  cancel() {
    if (!this.#done) this.#hooks.cancel(this);
    return this.#ended;
  }

  /** Submits the same inputs again, as a new job. */
  retry() {
    return this.#hooks.retry(this);
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

  // [SENT]: the submit is on the wire; the job no longer waits here.
  [SENT]() {
    if (this.#status === "waiting") this.#status = "pending";
  }

  [PUSH](ev) {
    if (this.#done) return;
    if (["waiting", "accepted", "queued", "started"].includes(ev.type)) this.#status = ev.type;
    else if (ev.type === "upload" && (this.#status === "pending" || this.#status === "waiting")) this.#status = "uploading";
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
    this.#hooks.outputs().forEach((o, i) => { if (o?.name && !(o.name in out) && i < data.length) out[o.name] = data[i]; });
    return out;
  }
}

/**
 * A file uploaded once with client.upload(blob), for use as an input of
 * later jobs of the session (pass it, or the blob, in their inputs).
 */
export class Upload {
  #blob;
  #onProgress;
  #rec = null;
  #client = null;
  #loaded = 0;
  #status = "uploading";
  #done;
  #settle;

  constructor(blob, options) {
    this.#blob = blob;
    this.#onProgress = typeof options.onProgress === "function" ? options.onProgress : null;
    this.#done = new Promise((resolve, reject) => { this.#settle = { resolve, reject }; });
    this.#done.catch(() => {});
  }

  /** The upload's id on the wire, u1, u2, …; null if it never started. */
  get id() { return this.#rec?.id ?? null; }
  get blob() { return this.#blob; }
  get name() { return typeof this.#blob.name === "string" && this.#blob.name ? this.#blob.name : "blob"; }
  get size() { return this.#blob.size; }
  /** Bytes the relay has received. */
  get loaded() { return this.#loaded; }
  /** uploading, uploaded, error or cancelled. */
  get status() { return this.#status; }
  /** Resolves with this upload when the relay has the whole file; rejects with a SpaceRelayError. */
  get done() { return this.#done; }

  /** Stops the upload, unless a job that uses it is still unfinished. */
  cancel() {
    if (this.#rec && this.#status === "uploading") this.#client[CTL](this.#rec, "cancel");
  }

  [CTL](rec, client) {
    this.#rec = rec;
    rec.handles.add(this);
    this.#client = client;
    if (rec.ended) this[END](rec.failed);
  }

  [PUSH](rec) {
    this.#loaded = rec.loaded ?? 0;
    this.#onProgress?.({ loaded: this.#loaded, total: rec.size });
  }

  [END](err) {
    if (this.#status !== "uploading") return;
    if (err) {
      this.#status = err.code === "cancelled" ? "cancelled" : "error";
      this.#settle.reject(err);
    } else {
      this.#status = "uploaded";
      this.#loaded = this.#blob.size;
      this.#settle.resolve(this);
    }
  }
}

function uploadEvent(job, rec) {
  return { type: "upload", id: job.id, upload: rec.id, name: rec.name, loaded: rec.loaded ?? 0, total: rec.size };
}

function jobError(err, jobId) {
  if (err instanceof SpaceRelayError) return new SpaceRelayError(err.code, err.message, { ...err, cause: err.cause, jobId });
  return new SpaceRelayError("internal", String(err?.message || err), { jobId, cause: err });
}

// timeoutSignal aborts after ms, or never for a bound that is no positive
// finite number (AbortSignal.timeout throws on those, or aborts at once).
function timeoutSignal(ms) {
  return Number.isFinite(ms) && ms > 0 ? globalThis.AbortSignal?.timeout?.(Math.ceil(ms)) : undefined;
}

// noUploads is the refusal of a file for a relay that takes none.
function noUploads(jobId = null) {
  return new SpaceRelayError("bad_request", "this relay does not take files from the page (its hello lists no \"upload\" feature)", { jobId });
}

function refreshError(status, body) {
  const code = body?.error?.code || `http_${status}`;
  const why = {
    unknown_session: "the relay no longer knows this session",
    missing_token: "no fresh token came with the request",
    token_expired: "the fresh token had expired too",
    forbidden_origin: "the relay does not allow this page's origin",
    rate_limited: "the relay asked to wait",
  }[code] || `the relay answered ${status}`;
  return new SpaceRelayError("token_refresh_failed", `Your sign-in for this Space could not be renewed (${why}). Reload the page to go on.`,
    { status, cause: new SpaceRelayError(code, String(body?.error?.message || code), { status }) });
}

function tokenInfo(t) {
  return { present: !!t?.present, expiresAt: t?.expires_at ? new Date(t.expires_at) : null };
}

// tokenLeft is the seconds a token has left: its expires_in, counted down
// from when it was read; null if it does not expire.
function tokenLeft(t) {
  if (t.expiresIn === null || t.expiresIn === undefined) return null;
  return Math.max(0, Math.floor(t.expiresIn - (now() - t.at) / 1000));
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

function bytes(n) {
  if (n >= 1024 * 1024) return `${+(n / 1024 / 1024).toFixed(1)} MiB`;
  if (n >= 1024) return `${+(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}

function detach(ws) {
  if (!ws) return;
  ws.onmessage = ws.onclose = ws.onerror = null;
}

function now() {
  return globalThis.performance?.now() ?? Date.now();
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function wsURL(url) {
  const base = globalThis.location?.href;
  const u = base ? new URL(String(url), base) : new URL(String(url));
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  else if (u.protocol !== "ws:" && u.protocol !== "wss:") throw new TypeError(`spacerelay: not a WebSocket URL: ${url}`);
  u.hash = "";
  return u.href;
}

// httpURL is the relay's HTTP address for a ws: or wss: URL.
function httpURL(ws) {
  const u = new URL(ws);
  u.protocol = u.protocol === "wss:" ? "https:" : "http:";
  return u.href;
}
