// Calls a Gradio Space with the official JavaScript client, @gradio/client,
// and prints what it saw as one JSON object (one member per scenario), like
// driver.py beside it:
//
//	node driver.mjs http://127.0.0.1:7860 OUTDIR TOKEN
//
// upstream/official_test.go runs both drivers against the demo Space and
// the real test Space and checks that each sees the same thing on both.
import { Client, handle_file } from "@gradio/client";
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";

const TIMEOUT = 30_000; // ms any one wait may take before the driver gives up
const [url, out, token] = process.argv.slice(2);
const base = url.replace(/\/$/, "");

const connect = (tok) => Client.connect(base, { headers: { "X-IP-Token": tok }, events: ["data", "status"] });

// keep downloads a result file into OUTDIR as name and returns its bytes.
async function keep(file, name) {
  const resp = await fetch(file.url);
  if (!resp.ok) throw new Error(`GET ${file.url}: ${resp.status}`);
  const bytes = Buffer.from(await resp.arrayBuffer());
  await writeFile(join(out, name), bytes);
  return bytes;
}

// texts turns a chat history into [role, text] pairs.
const texts = (history) =>
  history.map((m) => [
    m.role,
    Array.isArray(m.content) ? m.content.map((p) => p.text ?? "").join("") : m.content,
  ]);

function withTimeout(promise, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${TIMEOUT} ms`)), TIMEOUT);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

// follow iterates a job's events until it ends, calling onStatus for each
// status; it returns the data messages and the last status.
async function follow(job, onStatus = () => {}) {
  const data = [];
  let last = null;
  const run = (async () => {
    for await (const msg of job) {
      if (msg.type === "data") data.push(msg.data);
      if (msg.type === "status") {
        last = msg;
        await onStatus(msg);
        if (msg.stage === "complete" || msg.stage === "error") break;
      }
    }
  })();
  await withTimeout(run, "job");
  return { data, last };
}

// ending describes how a job ended: its last data or its error.
function ending({ data, last }) {
  if (last?.stage === "error") return { error: "status", message: last.message ?? null, title: last.title ?? null };
  if (data.length === 0) return { cancelled: last?.stage ?? "none" };
  return { result: data[data.length - 1] };
}

async function api(client) {
  const info = await client.view_api();
  const named = info.named_endpoints;
  return {
    endpoints: Object.keys(named).sort(),
    restyle: named["/restyle"].parameters.map((p) => p.parameter_name),
    restyle_defaults: named["/restyle"].parameters.map((p) => p.parameter_default ?? null),
  };
}

async function predict(client) {
  const call = async (endpoint, data) => (await withTimeout(client.predict(endpoint, data), endpoint)).data;
  const o = {};
  const [image, info] = await call("/generate", ["official fox", 1, 16, 12]);
  const sent = await keep(image, "generate.png");
  o.generate = { image: "generate.png", info: JSON.parse(info) };
  const [preview] = await call("/preview", ["official preview", 2]);
  await keep(preview, "preview.png");
  o.preview = { image: "preview.png" };
  o.count = [(await call("/count", []))[0], (await call("/count", []))[0]];
  await call("/reset_count", []);
  o.count_after_reset = (await call("/count", []))[0];
  o.whoami = (await call("/whoami", []))[0];
  const [restyled, rinfo] = await call("/restyle", [handle_file(new Blob([sent])), "official", 100, "invert"]);
  await keep(restyled, "restyle.png");
  const parsed = JSON.parse(rinfo);
  const intact = parsed.sha256 === createHash("sha256").update(sent).digest("hex");
  delete parsed.sha256;
  o.restyle = { image: "restyle.png", intact, info: parsed };
  const [box, history] = await call("/add_message", ["hello official world", []]);
  o.add_message = { box, history: texts(history) };
  o.bot_reply = texts((await call("/bot_reply", [history, 3]))[0]);
  o.chat = (await call("/chat", ["hi chat"]))[0];
  o.ticks = (await call("/ticks", [2]))[0];
  return o;
}

async function generator(client) {
  const { data } = await follow(client.submit("/ticks", [3]));
  return { outputs: data.map((d) => d[0]), result: data[data.length - 1][0] };
}

async function cancelQueued() {
  const blocker = await connect(token + "-a");
  const waiter = await connect(token + "-b");
  const long = blocker.submit("/generate", ["official blocker", 10, 8, 8]);
  let started;
  const running = new Promise((resolve) => (started = resolve));
  const longDone = follow(long, (s) => s.stage === "pending" && s.progress_data && started());
  await withTimeout(running, "the blocker to run");
  const queued = waiter.submit("/generate", ["official queued", 1, 8, 8]);
  const got = ending(
    await follow(queued, async (s) => {
      if (s.stage === "pending" && s.queue && s.position != null) await queued.cancel();
    }),
  );
  await long.cancel();
  await longDone;
  blocker.close();
  waiter.close();
  return got;
}

async function cancelRunning(client) {
  const job = client.submit("/generate", ["official running", 40, 8, 8]);
  let cancelled = false;
  return ending(
    await follow(job, async (s) => {
      if (!cancelled && s.progress_data) {
        cancelled = true;
        await job.cancel();
      }
    }),
  );
}

async function appError(client) {
  try {
    await withTimeout(client.predict("/generate", ["raise:official <i>cat</i>", 1, 8, 8]), "/generate");
    return { error: "none" };
  } catch (e) {
    return { error: "status", message: e.message ?? null, title: e.title ?? null };
  }
}

// restCall is the curl recipe of /info's code snippets, with fetch.
async function restCall() {
  const post = async (name, data) => {
    const resp = await fetch(`${base}/gradio_api/call/${name}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-IP-Token": token },
      body: JSON.stringify({ data }),
    });
    const { event_id } = await resp.json();
    const text = await (await fetch(`${base}/gradio_api/call/${name}/${event_id}`)).text();
    const events = [];
    let event = null;
    for (const line of text.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7);
      else if (line.startsWith("data: ")) events.push([event, JSON.parse(line.slice(6))]);
    }
    return events;
  };
  return {
    ticks: await post("ticks", [2]),
    error_events: (await post("generate", ["raise:rest", 1, 8, 8])).map(([e]) => e),
  };
}

const client = await connect(token);
const report = { api: await api(client), predict: await predict(client), generator: await generator(client) };
report.cancel_queued = await cancelQueued();
report.cancel_running = await cancelRunning(client);
report.app_error = await appError(client);
report.rest_call = await restCall();
client.close();
// The client keeps streams open; the report is all this process is for.
process.stdout.write(JSON.stringify(report, null, 1) + "\n", () => process.exit(0));
