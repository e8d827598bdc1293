// Helpers of the tests in ../test: the npm package as a visitor's project
// gets it, packed with npm pack and installed from the tarball into a
// scratch project.

import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
export const webDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const NPM_TIMEOUT = 120_000;

/**
 * Packs web/ and installs the tarball into a new scratch project. Returns
 * {dir, tarball, files} (files: the paths in the tarball); the scratch
 * directory is removed at exit.
 */
export async function installPackage() {
  const dir = mkdtempSync(join(tmpdir(), "spacerelay-pack-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", dir, "--loglevel=error"], { cwd: webDir, timeout: NPM_TIMEOUT });
  const [info] = JSON.parse(stdout);
  const tarball = join(dir, info.filename);
  const project = join(dir, "project");
  await run("mkdir", ["-p", project]);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "scratch", private: true, type: "module" }));
  await run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", tarball], { cwd: project, timeout: NPM_TIMEOUT });
  return { dir: project, tarball, info, files: info.files.map((f) => f.path).sort() };
}
