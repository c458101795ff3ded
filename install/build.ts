/**
 * Builds the release artifacts:
 *   dist/wolf                      the compiled binary (bun build --compile --minify --bytecode)
 *   dist/release/wolf-linux-<arch> the same binary under its release name, with a .sha256 beside it
 *   dist/release/install.sh        the curl-able installer
 *   dist/release/systemd/*         the systemd units the installer fetches
 *
 * Every `*.worker.ts` under lib/ is added as an extra entrypoint: a Worker missing from the bundle
 * only fails with an `error` event at runtime, so we never rely on listing them by hand.
 * Outputs are built beside their destination and renamed into place, so a test reading dist/
 * while another build runs never sees a half-written binary or a release whose checksum lags.
 */
import { $ } from "bun";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const dist = join(root, "dist");
const release = join(dist, "release");
const tag = `${process.pid}-${Date.now()}`;

const workers = [...new Bun.Glob("lib/**/*.worker.ts").scanSync({ cwd: root })].sort();
const arch = process.arch === "x64" ? "x64" : process.arch === "arm64" ? "arm64" : process.arch;

mkdirSync(dist, { recursive: true });
const started = performance.now();
const binTmp = join(dist, `.wolf-${tag}`);
try {
  await $`${process.execPath} build --compile --minify --bytecode --format=esm cmd/wolf.ts ${workers} --outfile ${binTmp}`
    .cwd(root)
    .quiet();
} catch (err) {
  rmSync(binTmp, { force: true });
  const e = err as { stderr?: Buffer; stdout?: Buffer };
  console.error(`build failed:\n${e.stderr?.toString() ?? ""}${e.stdout?.toString() ?? ""}`);
  process.exit(1);
}

const releaseTmp = join(dist, `.release-${tag}`);
mkdirSync(join(releaseTmp, "systemd"), { recursive: true });
const binName = `wolf-linux-${arch}`;
copyFileSync(binTmp, join(releaseTmp, binName));
const digest = createHash("sha256").update(readFileSync(binTmp)).digest("hex");
writeFileSync(join(releaseTmp, `${binName}.sha256`), `${digest}  ${binName}\n`);
copyFileSync(join(root, "install", "install.sh"), join(releaseTmp, "install.sh"));
for (const unit of readdirSync(join(root, "install", "systemd"))) {
  copyFileSync(join(root, "install", "systemd", unit), join(releaseTmp, "systemd", unit));
}

renameSync(binTmp, join(dist, "wolf"));
// A directory cannot be renamed over a non-empty one: move the old one aside first.
const oldRelease = join(dist, `.release-old-${tag}`);
try {
  renameSync(release, oldRelease);
} catch {
  // no previous release
}
renameSync(releaseTmp, release);
rmSync(oldRelease, { recursive: true, force: true });

const ms = Math.round(performance.now() - started);
console.error(
  `built dist/wolf (${workers.length} worker${workers.length === 1 ? "" : "s"}) and dist/release/${binName} in ${ms} ms`,
);
