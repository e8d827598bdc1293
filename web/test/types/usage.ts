// Compiled by types.test.js with tsc --noEmit --strict: the ways a page
// uses spacerelay.js, against spacerelay.d.ts. A type error here fails the
// test.

import { connect, spaceStatus, Client, SpaceRelayError, Upload, type SpaceStatus, type JobEvent, type TokenEvent, type StateChange } from "spacerelay";

async function page(file: File): Promise<void> {
  const relay = new Client("/v1/ws", { maxWaiting: 4, reconnect: { minDelay: 250 }, uploadBuffer: 1 << 20, refreshTimeout: 5000 });
  relay.on("statechange", (d: StateChange) => {
    if (d.state === "reconnecting" && d.error?.code === "upstream_unavailable") {
      console.log(`retrying in ${d.delay} ms`, d.error.retryAfter);
      void spaceStatus().then((s: SpaceStatus) => console.log(s.title, s.message, s.stage ?? "", s.ready, s.retryAfter ?? 0));
    }
  });
  relay.on("token", (t: TokenEvent) => { if (t.error) console.log(t.error.code, t.error.status, t.expiresIn); });
  await relay.ready;
  const max: number | null = relay.limits?.maxUploadBytes ?? null;
  const left: number | null = relay.token?.expiresIn ?? null;
  console.log(max, left, relay.features.includes("upload"), relay.waiting);

  const ep = relay.endpoint("/restyle");
  for (const input of ep?.inputs ?? []) {
    const accept: string = (input.file_types ?? []).join(",");
    const bounds: [number?, number?, number?] = [input.minimum, input.maximum, input.step];
    const choices = input.choices?.map((c) => c.label) ?? [];
    console.log(accept, bounds, choices, input.info, ep?.generator === true);
  }

  const up: Upload = relay.upload(file, { onProgress: ({ loaded, total }) => console.log(loaded / total) });
  await up.done;
  const job = relay.submit("/restyle", { image: up, prompt: "watercolour", gallery: [{ file, caption: "x" }] });
  for await (const ev of job) {
    const e: JobEvent = ev;
    switch (e.type) {
      case "waiting": console.log(e.position, e.reason); break;
      case "upload": console.log(e.upload, e.name, e.loaded, e.total); break;
      case "queued": console.log(e.position, e.eta); break;
      case "error": console.log(e.error.code === "connection_lost", e.error.closeCode); break;
    }
  }
  try {
    const { data, duration } = await job.result;
    console.log(data, duration);
  } catch (err) {
    if (err instanceof SpaceRelayError && err.code === "connection_lost") job.retry();
  }
  const again = job.retry();
  await again.cancel();
  console.log(again.inputs, again.status === "waiting");
  const ok: boolean = await relay.refreshToken();
  console.log(ok);
  relay.close();
  const other: Client = await connect("wss://relay.example/v1/ws");
  other.close();
}

void page;
