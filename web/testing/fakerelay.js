// A fake relay for the tests in ../test: an HTTP server with a ws
// WebSocketServer on /v1/ws that speaks the documented messages of
// PROTOCOL.md as each test scripts them, for what the real relay cannot
// be made to do (or does not do yet): refusals by close code, token
// refresh, uploads.

import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocketServer } from "ws";
import { withTimeout } from "./relay.js";

const WEB = join(dirname(fileURLToPath(import.meta.url)), "..");

/** hello with the given fields over the defaults of the fake. */
export function helloMessage(over = {}) {
  return {
    type: "hello", protocol: 1, session: "s1",
    endpoints: [
      { name: "/echo", inputs: [{ name: "image", type: "file" }, { name: "prompt", type: "string" }], outputs: [{ name: "image", component: "Image" }] },
      { name: "/gallery", inputs: [], outputs: [{ name: "images", component: "Gallery" }, { name: "n" }] },
    ],
    limits: { max_jobs: 2, max_message_bytes: 65536, max_file_bytes: 1000, max_upload_bytes: 64 << 20, max_session_upload_bytes: 256 << 20, upload_chunk_bytes: 1000 },
    features: ["upload", "token_refresh"],
    token: { present: true, expires_at: "2030-01-02T03:04:05Z", expires_in: null },
    ...over,
  };
}

/**
 * Starts a fake relay on a loopback port. Set onConnection(sock) to script
 * each socket and onRefresh(req, res, body) for POST /v1/sessions/…/token.
 * It serves the demo page and the module (GET / and /spacerelay.js) from
 * web/, and GET /readyz from fake.readyz.
 * With uploads on (the default) the fake takes upload messages and their
 * binary frames as section 9 says, answering upload_progress per frame and
 * uploaded at the end, unless sock.holdUploads is set.
 */
export async function startFake() {
  const fake = {
    sockets: [],
    refreshes: [],
    onConnection: (sock) => sock.hello(),
    onRefresh: (req, res) => json(res, 404, { error: { code: "unknown_session", message: "no such session" } }),
    readyz: { ready: true, state: "ready", message: "" }, // what GET /readyz answers
  };
  const http = createServer((req, res) => {
    if (req.method === "POST" && /^\/v1\/sessions\/[^/]+\/token$/.test(req.url)) {
      let body = "";
      req.on("data", (d) => { body += d; });
      req.on("end", () => {
        fake.refreshes.push({ url: req.url, headers: req.headers, body, at: fake.sockets.at(-1)?.log.length ?? 0 });
        fake.onRefresh(req, res, body);
      });
      return;
    }
    const file = { "/": "index.html", "/spacerelay.js": "spacerelay.js" }[req.url];
    if (req.method === "GET" && file) {
      const type = file.endsWith(".js") ? "text/javascript" : "text/html";
      res.writeHead(200, { "Content-Type": `${type}; charset=utf-8`, "Cache-Control": "no-store" }).end(readFileSync(join(WEB, file)));
      return;
    }
    if (req.method === "GET" && req.url === "/readyz") {
      json(res, fake.readyz.ready ? 200 : 503, fake.readyz, { "Cache-Control": "no-store" });
      return;
    }
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ server: http, path: "/v1/ws" });
  wss.on("connection", (ws, req) => {
    const sock = new FakeSocket(ws, req);
    fake.sockets.push(sock);
    fake.onConnection(sock);
  });
  await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
  const { port } = http.address();
  fake.port = port;
  fake.url = `ws://127.0.0.1:${port}/v1/ws`;
  fake.http = `http://127.0.0.1:${port}`;
  fake.close = () => new Promise((resolve) => {
    for (const ws of wss.clients) ws.terminate();
    wss.close();
    http.close(resolve);
    http.closeAllConnections();
  });
  return fake;
}

export function json(res, status, body, headers = {}) {
  res.writeHead(status, { "Content-Type": "application/json", ...headers }).end(JSON.stringify(body));
}

/** One socket of the fake: what the client sent, and ways to answer. */
export class FakeSocket {
  constructor(ws, req) {
    this.ws = ws;
    this.req = req;
    this.protocol = ws.protocol;
    this.log = []; // every message from the client in order: objects, and {type:"binary", data} for frames
    this.uploads = new Map(); // id → {msg, frames: [Buffer], received}
    this.current = null; // the upload whose frames come now
    this.holdUploads = false; // no "uploaded" by itself
    this.holdProgress = false; // no "upload_progress" by itself
    this.chunkBytes = 0; // set by hello: frames over it, or past the relay's window, mark the upload broken
    this.pong = true; // answer pings
    this.autoUploads = true;
    this.waiters = [];
    this.uploadWaiters = [];
    this.closed = new Promise((resolve) => ws.once("close", (code) => resolve(code)));
    ws.on("message", (raw, isBinary) => this.#receive(raw, isBinary));
  }

  send(o) { this.ws.send(JSON.stringify(o)); }

  hello(over = {}) {
    const m = helloMessage(over);
    this.chunkBytes = m.limits?.upload_chunk_bytes ?? 0;
    this.send(m);
  }

  /** The next message of the client matching pred (a type, or a function), waited for. */
  next(pred, ms = 5000) {
    const match = typeof pred === "function" ? pred : (m) => m.type === pred;
    const found = this.log.find((m) => !m.taken && match(m));
    if (found) {
      found.taken = true;
      return Promise.resolve(found);
    }
    return withTimeout(new Promise((resolve) => this.waiters.push({ match, resolve })), ms, `a ${pred.name || pred} message from the client`);
  }

  /** Messages of the client so far, of a type. */
  sent(type) { return this.log.filter((m) => m.type === type); }

  #receive(raw, isBinary) {
    const m = isBinary ? { type: "binary", data: Buffer.from(raw) } : JSON.parse(String(raw));
    this.log.push(m);
    if (m.type === "ping" && this.pong) this.send({ type: "pong" });
    if (this.autoUploads) this.#upload(m);
    const i = this.waiters.findIndex((w) => w.match(m));
    if (i >= 0) {
      m.taken = true;
      this.waiters.splice(i, 1)[0].resolve(m);
    }
  }

  // #upload plays the relay's part of section 9.
  #upload(m) {
    if (m.type === "upload") {
      const u = { msg: m, frames: [], received: 0, reported: 0, broken: null };
      this.uploads.set(m.id, u);
      this.current = u;
      if (m.size === 0) this.uploaded(u);
    } else if (m.type === "cancel" && this.uploads.has(m.id)) {
      if (this.current === this.uploads.get(m.id)) this.current = null;
      this.uploads.get(m.id).cancelled = true;
    } else if (m.type === "binary") {
      const u = this.current;
      if (!u) {
        this.send({ type: "error", code: "bad_request", message: "a binary frame with no upload open" });
        return;
      }
      const chunk = this.chunkBytes;
      if (chunk && (m.data.length > chunk || u.received + m.data.length - u.reported > 4 * chunk)) {
        u.broken = `a frame of ${m.data.length} bytes at ${u.received}, past the window (last progress ${u.reported})`;
      }
      u.frames.push(m.data);
      u.received += m.data.length;
      if (!this.holdProgress) this.progress(u);
      if (u.received >= u.msg.size && !this.holdUploads) this.uploaded(u);
    }
  }

  /** Sends upload_progress for u at what it has received. */
  progress(u) {
    u.reported = u.received;
    this.send({ type: "upload_progress", id: u.msg.id, received: u.received, size: u.msg.size });
  }

  uploaded(u) {
    if (this.current === u) this.current = null;
    u.done = true;
    this.send({ type: "uploaded", id: u.msg.id, size: u.received });
    for (const w of this.uploadWaiters.splice(0)) w();
  }

  /**
   * Calls fn once every upload that submit names has been uploaded, as the
   * relay joins such a job only then (section 9).
   */
  afterUploads(submit, fn) {
    const ids = [];
    const walk = (v) => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === "object") {
        if (typeof v.upload === "string") ids.push(v.upload);
        else Object.values(v).forEach(walk);
      }
    };
    walk(submit.data ?? submit.inputs);
    const check = () => {
      if (ids.every((id) => this.uploads.get(id)?.done)) fn();
      else this.uploadWaiters.push(check);
    };
    check();
  }

  /** The bytes of an upload, joined. */
  bytes(id) { return Buffer.concat(this.uploads.get(id)?.frames ?? []); }
}
