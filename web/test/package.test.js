// web/ as the npm package spacerelay: what npm pack puts in it, that it
// installs from the tarball into a scratch project and imports there, and
// that its types compile against a page's use of them. The browser test
// imports the same package in Chromium.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { installPackage, webDir } from "../testing/pack.js";

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(webDir, "package.json"), "utf8"));

test("package.json: an ESM package with exports and types, no runtime dependencies", () => {
  assert.equal(pkg.name, "spacerelay");
  assert.match(pkg.version, /^\d+\.\d+\.\d+$/);
  assert.equal(pkg.type, "module");
  assert.deepEqual(pkg.exports["."], { types: "./spacerelay.d.ts", default: "./spacerelay.js" });
  assert.equal(pkg.types, "./spacerelay.d.ts");
  assert.equal(pkg.private, undefined, "publishable");
  assert.equal(pkg.dependencies, undefined);
  assert.equal(pkg.peerDependencies, undefined);
  assert.equal(pkg.optionalDependencies, undefined);
});

test("npm pack, installed from the tarball into a scratch project, imported in Node", { timeout: 180_000 }, async () => {
  const { dir, files, info } = await installPackage();
  assert.deepEqual(files, ["PROTOCOL.md", "README.md", "package.json", "spacerelay.d.ts", "spacerelay.js"]);
  assert.equal(info.version, pkg.version);
  const script = `
    import * as m from "spacerelay";
    import p from "spacerelay/package.json" with { type: "json" };
    const url = import.meta.resolve("spacerelay");
    console.log(JSON.stringify({ exports: Object.keys(m).sort(), version: p.version, url, protocol: m.PROTOCOL }));
  `;
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: dir });
  const got = JSON.parse(stdout);
  assert.deepEqual(got.exports, ["Client", "Job", "PROTOCOL", "SUBPROTOCOL", "SpaceRelayError", "Upload", "connect", "spaceStatus"]);
  assert.equal(got.version, pkg.version);
  assert.equal(got.protocol, 1);
  assert.match(got.url, /\/project\/node_modules\/spacerelay\/spacerelay\.js$/, "the installed copy, not the worktree's");
});

test("spacerelay.d.ts: a page's use of the API compiles with tsc --strict", { timeout: 60_000 }, async () => {
  const tsc = join(webDir, "node_modules", "typescript", "bin", "tsc");
  try {
    await run(process.execPath, [tsc, "-p", join(webDir, "test", "types")], { cwd: webDir });
  } catch (err) {
    assert.fail(`tsc: ${err.stdout || err.message}`);
  }
});
