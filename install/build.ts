/**
 * Builds the release artifacts:
 *   dist/wolf                      the compiled binary (bun build --compile --minify --bytecode)
 *   dist/release/wolf-linux-<arch> the same binary under its release name, with a .sha256 beside it
 *   dist/release/install.sh        the curl-able installer
 *   dist/release/systemd/*         the systemd units the installer fetches
 *
 * Every `*.worker.ts` under lib/ is added as an extra entrypoint: a Worker missing from the bundle
 * only fails with an `error` event at runtime, so we never rely on listing them by hand.
 */
import { $ } from "bun";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const dist = join(root, "dist");
const release = join(dist, "release");

const workers = [...new Bun.Glob("lib/**/*.worker.ts").scanSync({ cwd: root })].sort();
const arch = process.arch === "x64" ? "x64" : process.arch === "arm64" ? "arm64" : process.arch;

mkdirSync(dist, { recursive: true });
const started = performance.now();
await $`${process.execPath} build --compile --minify --bytecode --format=esm cmd/wolf.ts ${workers} --outfile ${join(dist, "wolf")}`
  .cwd(root)
  .quiet();

rmSync(release, { recursive: true, force: true });
mkdirSync(join(release, "systemd"), { recursive: true });
const binName = `wolf-linux-${arch}`;
copyFileSync(join(dist, "wolf"), join(release, binName));
const digest = createHash("sha256").update(readFileSync(join(release, binName))).digest("hex");
writeFileSync(join(release, `${binName}.sha256`), `${digest}  ${binName}\n`);
copyFileSync(join(root, "install", "install.sh"), join(release, "install.sh"));
for (const unit of readdirSync(join(root, "install", "systemd"))) {
  copyFileSync(join(root, "install", "systemd", unit), join(release, "systemd", unit));
}

const ms = Math.round(performance.now() - started);
console.error(`built dist/wolf (${workers.length} worker${workers.length === 1 ? "" : "s"}) and dist/release/${binName} in ${ms} ms`);
