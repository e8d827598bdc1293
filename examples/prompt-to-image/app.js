// A prompt-to-image page on spacerelay: plain HTML and an ES module, no build
// step. The relay serves it with --static (SPACERELAY_STATIC) and serves the
// client module at /spacerelay.js, so the page imports it from there.
//
// The page builds itself from the relay's hello: it runs the Space's first
// endpoint that takes a prompt and returns an image, offers an image input
// if the Space has an endpoint that also takes an image, and shows a control
// for each other input (steps, sizes, sliders, dropdowns) with its default.
// To choose the endpoints yourself, set data-endpoint and
// data-image-endpoint on <body>.

import { Client, spaceStatus } from "/spacerelay.js";

const $ = (id) => document.getElementById(id);
const form = $("form");
const promptBox = $("prompt");
const imageBox = $("image");

let relay = null;
let endpoints = { text: null, image: null };
let current = null; // the job running, if any
let countdown = 0; // the interval of a "try again in" countdown
const retrying = { timer: 0, n: 0 }; // the "retrying in" countdown of the connection

const CONNECTION = { connecting: "Connecting…", open: "Connected", reconnecting: "Reconnecting…", closed: "Disconnected" };
// Why the relay turned the connection away for now (PROTOCOL.md section 1);
// the client retries by itself.
const REFUSED = {
  too_many_sessions: "Too many tabs are open on this Space: close one",
  over_capacity: "The relay is full",
  shutting_down: "The relay is restarting",
  upstream_unavailable: "The Space is starting",
};
const TITLES = {
  quota_exceeded: "Out of GPU quota",
  connection_lost: "Connection lost",
  token_expired: "Your session has expired",
  upstream_unavailable: "The Space is not available",
};

main();

// main listens to the client before it connects: a Space that sleeps keeps
// the first connection waiting (the relay refuses it with a time to come
// back, and the client retries), and the page says so meanwhile.
async function main() {
  relay = new Client("/v1/ws");
  relay.on("statechange", onState);
  relay.on("hello", setup); // the first, and after each reconnection
  relay.on("token", (t) => {
    showToken();
    if (t.error) showError({ title: "Your session could not be renewed", message: "Reload the page to go on." });
  });
  setConnection(relay.state);
  try {
    await relay.ready;
  } catch (err) {
    showError({ title: err.code === "missing_token" ? "Sign-in needed" : "The relay cannot be reached", message: err.message });
  }
}

// onState shows the connection in words, with a countdown while the
// client waits to retry.
function onState({ state, error, delay }) {
  clearInterval(retrying.timer);
  const n = ++retrying.n; // a /readyz answer for an older state is dropped
  if (state !== "reconnecting") {
    setConnection(state, state === "closed" && error ? `${CONNECTION.closed}: ${error.message}` : undefined);
    return;
  }
  let title = REFUSED[error?.code] ?? "Connection lost";
  const until = performance.now() + delay;
  const tick = () => {
    const s = Math.ceil((until - performance.now()) / 1000);
    setConnection(state, s > 0 ? `${title}, retrying in ${s} s` : `${title}, retrying…`);
  };
  tick();
  retrying.timer = setInterval(tick, 500);
  if (error?.code === "upstream_unavailable") {
    spaceStatus().then(({ title: t, message }) => {
      if (n !== retrying.n) return;
      title = t;
      tick();
      if (message && !current) setStatus(message);
    });
  }
}


// setup builds the form from hello's endpoints.
function setup() {
  endpoints = pickEndpoints(relay.endpoints);
  if (!endpoints.text && !endpoints.image) {
    showError({ title: "Nothing to run here", message: "The Space has no endpoint that takes a prompt and returns an image." });
    return;
  }
  $("image-input").hidden = !endpoints.image;
  renderOptions();
  showToken();
  $("generate").disabled = current !== null;
  if (!current) setStatus("Ready. Describe an image.");
}

const promptOf = (e) => e.inputs.find((i) => i.type === "string" && /prompt|text/i.test(i.name)) ?? e.inputs.find((i) => i.type === "string");
const fileOf = (e) => e.inputs.find((i) => i.type === "file");
const givesImage = (e) => e.outputs.some((o) => /Image|Gallery/.test(o.component ?? ""));

function pickEndpoints(list) {
  const named = (name) => (name ? list.find((e) => e.name === name) : undefined);
  const { endpoint, imageEndpoint } = document.body.dataset;
  return {
    text: named(endpoint) ?? list.find((e) => promptOf(e) && !fileOf(e) && givesImage(e) && !e.generator) ?? null,
    image: named(imageEndpoint) ?? list.find((e) => promptOf(e) && fileOf(e) && givesImage(e)) ?? null,
  };
}

// active is the endpoint a submit goes to now: the image one once an image is chosen.
function active() {
  return (imageBox.files.length && endpoints.image) || endpoints.text || endpoints.image;
}

// renderOptions shows a control for each input of the active endpoint but
// its prompt and its image, keeping the values already set.
function renderOptions() {
  const ep = active();
  const keep = values();
  const inputs = ep.inputs.filter((i) => i !== promptOf(ep) && i.type !== "file");
  $("options").replaceChildren(...inputs.map((i) => control(i, i.name in keep ? keep[i.name] : i.default)));
}

function control(input, value) {
  const id = `opt-${input.name}`;
  const label = el("label", { htmlFor: id, title: input.info ?? "" }, input.label || input.name);
  let field;
  if (input.choices) {
    field = el("select", {}, ...input.choices.map((c) => el("option", { value: JSON.stringify(c.value) }, c.label)));
    field.value = JSON.stringify(value ?? input.choices[0]?.value);
  } else if (input.type === "integer" || input.type === "number") {
    const ranged = input.minimum != null && input.maximum != null;
    field = el("input", { type: ranged ? "range" : "number", step: input.step ?? (input.type === "integer" ? 1 : "any") });
    if (input.minimum != null) field.min = input.minimum;
    if (input.maximum != null) field.max = input.maximum;
    field.value = value ?? "";
    if (ranged) {
      const shown = el("output", { htmlFor: id }, String(field.value));
      field.addEventListener("input", () => (shown.value = field.value));
      label.append(shown);
    }
  } else if (input.type === "boolean") {
    field = el("input", { type: "checkbox", checked: Boolean(value) });
  } else {
    field = el("input", { type: "text", value: value ?? "" });
  }
  Object.assign(field, { id, name: input.name });
  field.dataset.type = input.type;
  return el("div", {}, label, field);
}

// values reads the option controls, by input name; an empty number is left
// out, so that the Space's default applies.
function values() {
  const out = {};
  for (const f of $("options").querySelectorAll("[name]")) {
    if (f.tagName === "SELECT") out[f.name] = JSON.parse(f.value);
    else if (f.type === "checkbox") out[f.name] = f.checked;
    else if (f.dataset.type === "integer" || f.dataset.type === "number") {
      if (f.value !== "") out[f.name] = f.dataset.type === "integer" ? Math.round(Number(f.value)) : Number(f.value);
    } else out[f.name] = f.value;
  }
  return out;
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  run();
});
promptBox.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    if (!$("generate").disabled) form.requestSubmit();
  }
});
$("cancel").addEventListener("click", () => current?.cancel());

imageBox.addEventListener("change", () => {
  const file = imageBox.files[0];
  $("image-preview").hidden = $("image-clear").hidden = !file;
  if (file) $("image-preview").src = URL.createObjectURL(file);
  renderOptions();
});
$("image-clear").addEventListener("click", () => {
  imageBox.value = "";
  imageBox.dispatchEvent(new Event("change"));
});
$("image-input").addEventListener("dragover", (e) => e.preventDefault());
$("image-input").addEventListener("drop", (e) => {
  e.preventDefault();
  if (!e.dataTransfer.files.length) return;
  imageBox.files = e.dataTransfer.files;
  imageBox.dispatchEvent(new Event("change"));
});

// run submits the prompt and follows its job to the end.
async function run() {
  const ep = active();
  const prompt = promptBox.value.trim();
  if (!prompt) return promptBox.focus();
  const inputs = { ...values(), [promptOf(ep).name]: prompt };
  if (ep === endpoints.image && imageBox.files.length) inputs[fileOf(ep).name] = imageBox.files[0];
  clearError();
  $("result").hidden = true;
  const job = relay.submit(ep.name, inputs);
  current = job;
  $("generate").disabled = true;
  $("cancel").hidden = false;
  try {
    for await (const ev of job) show(ev);
    showResult((await job.result).data, prompt);
  } catch (err) {
    if (err.code === "cancelled") setStatus("Cancelled.");
    else showError(err);
  } finally {
    current = null;
    $("generate").disabled = false;
    $("cancel").hidden = true;
    $("progress").hidden = true;
  }
}

// show says where the job is: waiting here, uploading, in the Space's
// queue (with its position), running (with its progress).
function show(ev) {
  switch (ev.type) {
    case "waiting":
      return setStatus(ev.reason === "connection" ? "Waiting for the connection…" : "Waiting for your other prompts…");
    case "upload":
      setProgress(ev.loaded / ev.total);
      return setStatus(`Sending your image · ${Math.round((100 * ev.loaded) / ev.total)}%`);
    case "accepted":
      setProgress(null);
      return setStatus("Sent to the Space.");
    case "queued":
      return setStatus(ev.position ? `Queued · ${ev.position} ahead of you` : "Queued · you are next");
    case "started":
      return setStatus("Generating…");
    case "log":
      return ev.message && setStatus(ev.message); // e.g. ZeroGPU's "Waiting for a GPU to become available"
    case "progress": {
      setProgress(ev.fraction);
      const s = ev.steps[0];
      return setStatus(s?.length ? `Generating · step ${s.index + 1} of ${s.length}` : "Generating…");
    }
  }
}

function showResult(data, prompt) {
  const image = data
    .flat(2)
    .map((d) => d?.file ?? d)
    .find((d) => d instanceof Blob && d.type.startsWith("image/"));
  if (!image) return setStatus("Done, but the Space sent no image.");
  const url = URL.createObjectURL(image);
  Object.assign($("result-image"), { src: url, alt: prompt });
  $("result-caption").textContent = prompt;
  $("result").hidden = false;
  $("gallery").prepend(el("li", {}, el("img", { src: url, alt: prompt, title: prompt })));
  $("history").hidden = false;
  setStatus("Done.");
}

function showError({ code, title, message, retryAfter }) {
  clearError();
  $("error-title").textContent = title || TITLES[code] || "Something went wrong";
  $("error-message").textContent = message ?? "";
  $("error").hidden = false;
  setStatus("");
  if (retryAfter > 0) {
    const until = performance.now() + retryAfter * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - performance.now()) / 1000));
      $("error-message").textContent = `${message} You can try again in ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}.`;
      if (!left) clearInterval(countdown);
    };
    tick();
    countdown = setInterval(tick, 1000);
  }
}

function clearError() {
  clearInterval(countdown);
  $("error").hidden = true;
}

function setStatus(text) {
  $("status").textContent = text;
}

// setProgress shows a fraction 0..1, or an indeterminate bar for null.
function setProgress(fraction) {
  const bar = $("progress");
  bar.hidden = false;
  if (fraction == null) bar.removeAttribute("value");
  else bar.value = fraction;
}

function setConnection(state, text = CONNECTION[state]) {
  const c = $("connection");
  c.dataset.state = state;
  c.textContent = text;
}

// showToken says whether the relay got this visitor's token: on a
// Hugging Face Space it did, and the jobs use the visitor's own quota.
function showToken() {
  const t = relay.token;
  $("token").textContent = t?.present
    ? "Your jobs run on your own GPU quota (the relay has your visitor token)"
    : "No visitor token: jobs run on the Space's shared quota";
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}
