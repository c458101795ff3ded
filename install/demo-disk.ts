/**
 * The demo's wolf disk step: a drive in a temp dir, mounted by `wolf disk mount` in the
 * background, a real tree copied into it and compared, `wolf disk status`, then `wolf disk
 * unmount` and the daemon's clean exit. Everything it starts or mounts is stopped and removed,
 * also when a step fails.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { waitUntil } from "../lib/common/wait.ts";

/** True if `path` is a wolf disk mount now (from /proc/mounts; never touches the mount). */
function mountedAt(path: string): boolean {
  return readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .some((line) => {
      const [, point, type] = line.split(" ");
      return point?.replace(/\\040/g, " ") === path && type === "fuse.wolf";
    });
}

/** Runs a plain command the way `run` runs wolf: shows it and its output, throws if it fails. */
function shell(argv: string[]): string {
  process.stdout.write(`$ ${argv.join(" ")}\n`);
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: "utf8" });
  process.stdout.write(r.stdout ?? "");
  process.stdout.write(r.stderr ?? "");
  if (r.status !== 0) throw new Error(`${argv.join(" ")} exited with ${r.status ?? r.signal}`);
  return r.stdout;
}

/** A tree worth copying: bash's docs if installed, else this repository's lib/. */
function sourceTree(): string {
  const docs = "/usr/share/doc/bash";
  return existsSync(docs) ? docs : join(import.meta.dir, "..", "lib");
}

export async function demoDisk(wolf: string, run: (args: string[]) => string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "wolf-demo-disk-"));
  const config = join(dir, "disk.toml");
  const mnt = join(dir, "mnt");
  const log = join(dir, "daemon.log");
  let daemon: ChildProcess | undefined;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  try {
    run(["disk", "init", "--config", config]);
    // The drive's data goes into the temp dir too.
    writeFileSync(
      config,
      readFileSync(config, "utf8").replace(/^data_dir = .*$/m, `data_dir = ${JSON.stringify(join(dir, "data"))}`),
    );
    run(["disk", "validate", "--config", config]);

    mkdirSync(mnt);
    process.stdout.write(`$ wolf disk mount --config ${config} -m ${mnt} &\n`);
    // Output to a file, not a pipe: a pipe nobody drains while cp runs could stall the daemon.
    const out = openSync(log, "w");
    try {
      daemon = spawn(wolf, ["disk", "mount", "--config", config, "-m", mnt], {
        stdio: ["ignore", out, out],
        env: { ...process.env, NO_COLOR: "1" },
      });
    } finally {
      closeSync(out);
    }
    daemon.on("exit", (code, signal) => (exit = { code, signal }));
    await waitUntil(
      () => {
        if (exit)
          throw new Error(
            `wolf disk mount exited (${exit.code ?? exit.signal}) before mounting:\n${readFileSync(log, "utf8")}`,
          );
        return mountedAt(mnt);
      },
      { timeoutMs: 30_000, what: `${mnt} to be mounted` },
    );
    process.stdout.write(readFileSync(log, "utf8"));

    const src = sourceTree();
    const copy = join(mnt, basename(src));
    shell(["cp", "-a", src, mnt]);
    shell(["ls", "-l", copy]);
    shell(["du", "-sh", copy]);
    shell(["diff", "-r", src, copy]);
    process.stdout.write("(identical)\n");
    run(["disk", "status", "--config", config]);

    run(["disk", "unmount", "-m", mnt]);
    await waitUntil(() => exit, { timeoutMs: 30_000, what: "wolf disk mount to exit after the unmount" });
    process.stdout.write(readFileSync(log, "utf8").split("\n").slice(-2).join("\n"));
    if (exit!.code !== 0)
      throw new Error(
        `wolf disk mount exited with ${exit!.code ?? exit!.signal} after the unmount:\n${readFileSync(log, "utf8")}`,
      );
  } finally {
    if (daemon && !exit) {
      daemon.kill("SIGTERM"); // unmounts cleanly
      await waitUntil(() => exit, { timeoutMs: 15_000, what: "wolf disk mount to stop" }).catch(() =>
        daemon!.kill("SIGKILL"),
      );
      await waitUntil(() => exit, { timeoutMs: 5_000, what: "wolf disk mount to die" }).catch(() => {});
    }
    // A mount left behind (daemon killed) is detached; never delete through a mount.
    if (mountedAt(mnt)) spawnSync(wolf, ["disk", "unmount", "-m", mnt, "--lazy"], { stdio: "ignore" });
    if (mountedAt(mnt)) spawnSync("umount", ["-l", mnt], { stdio: "ignore" });
    if (!mountedAt(mnt)) rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`left ${dir} in place: ${mnt} is still mounted\n`);
  }
}
