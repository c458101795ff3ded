/**
 * The curl-able installer (install/install.sh) against a release served from 127.0.0.1: it installs
 * the binary byte for byte with the systemd units, refuses a binary whose SHA-256 does not match,
 * works piped into `sh`, falls back to wget / shasum, and fails clearly on bad input.
 *
 * The binary and its .sha256 are dist/release/ from install/build.ts (built here when missing).
 * The installer script and the units are served from install/, so the test covers the sources,
 * not a stale copy in dist/release.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { waitUntil } from "../../lib/common/wait.ts";

const ROOT = join(import.meta.dir, "..", "..");
const SCRIPT = join(ROOT, "install", "install.sh");
const UNITS_DIR = join(ROOT, "install", "systemd");
const RELEASE_DIR = join(ROOT, "dist", "release");
const UNITS = ["wolf-scale.service", "wolf-disk@.service", "wolf-net.service"];
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;
const ARCH = process.arch === "x64" ? "x64" : process.arch === "arm64" ? "arm64" : process.arch;
const BIN_NAME = `wolf-linux-${ARCH}`;
const RUN_TIMEOUT_MS = 60_000;
/** Per-test deadline: a run hashes and copies the ~100 MB binary a few times. Passed explicitly
 * because bun 1.4.5 ignores `[test] timeout` in bunfig.toml (default stays 5 s). */
const TEST_TIMEOUT_MS = 90_000;
/** beforeAll may have to run install/build.ts. */
const SETUP_TIMEOUT_MS = 180_000;

const sha256 = (data: Uint8Array | string) => createHash("sha256").update(data).digest("hex");
const mode = (path: string) => statSync(path).mode & 0o777;
const which = (cmd: string) => Bun.which(cmd) !== null;

let work = "";
let server: ReturnType<typeof Bun.serve> | undefined;
let baseUrl = "";
let binary: Uint8Array = new Uint8Array();
let scriptText = "";
let tmpCounter = 0;

/** A fresh empty directory under the test's work dir. */
function freshDir(label: string): string {
  const dir = join(work, `${label}-${++tmpCounter}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

async function loadRelease(): Promise<{ bin: Uint8Array; sumFile: string }> {
  const binPath = join(RELEASE_DIR, BIN_NAME);
  const sumPath = `${binPath}.sha256`;
  if (!existsSync(binPath) || !existsSync(sumPath)) {
    const build = Bun.spawn([process.execPath, join(ROOT, "install", "build.ts")], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, err] = await Promise.all([build.exited, new Response(build.stderr).text()]);
    if (code !== 0) throw new Error(`install/build.ts failed (exit ${code}):\n${err}`);
  }
  // Snapshot into memory, so a rebuild during the test does not change what we serve. build.ts
  // deletes and rewrites dist/release non-atomically: if another build is running, wait until
  // the binary and its .sha256 agree again.
  return waitUntil(
    () => {
      const bin = new Uint8Array(readFileSync(binPath));
      const sumFile = readFileSync(sumPath, "utf8");
      return sumFile.split(/\s/)[0] === sha256(bin) && { bin, sumFile };
    },
    { timeoutMs: 60_000, intervalMs: 500, what: `a consistent ${BIN_NAME} and .sha256 in dist/release` },
  );
}

/** Routes: /<variant>/<file> for a few release variants; anything else is a 404. */
function buildRoutes(bin: Uint8Array, sumFile: string): Map<string, Uint8Array | string> {
  const routes = new Map<string, Uint8Array | string>();
  const units = UNITS.map((u) => [`systemd/${u}`, readFileSync(join(UNITS_DIR, u), "utf8")] as const);
  const tampered = bin.slice();
  const middle = Math.floor(tampered.length / 2);
  tampered[middle] = (tampered[middle] ?? 0) ^ 0xff;
  const variants: Record<string, [Uint8Array, string]> = {
    good: [bin, sumFile],
    // Same checksum file, one flipped byte in the binary.
    tampered: [tampered, sumFile],
    // Right binary, checksum of something else.
    wrongsum: [bin, `${sha256("not the wolf binary")}  ${BIN_NAME}\n`],
    // What a wrong base URL behind a catch-all web server looks like.
    malformed: [bin, "<html><body>Welcome!</body></html>\n"],
  };
  for (const [variant, [b, sum]] of Object.entries(variants)) {
    routes.set(`/${variant}/${BIN_NAME}`, b);
    routes.set(`/${variant}/${BIN_NAME}.sha256`, sum);
    for (const [path, text] of units) routes.set(`/${variant}/${path}`, text);
  }
  routes.set("/good/install.sh", readFileSync(SCRIPT, "utf8"));
  return routes;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  /** WOLF_BASE_URL for the child; unset when omitted. */
  baseUrl?: string;
  /** Feed this text on stdin (the curl | sh case). */
  stdin?: string;
  /** PATH for the child. */
  path?: string;
  /** TMPDIR for the child (to check the installer cleans up its temp dir). */
  tmp?: string;
  cwd?: string;
}

async function run(argv: string[], opts: RunOptions = {}): Promise<Run> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && k !== "WOLF_BASE_URL") env[k] = v;
  }
  if (opts.baseUrl !== undefined) env.WOLF_BASE_URL = opts.baseUrl;
  if (opts.path !== undefined) env.PATH = opts.path;
  env.TMPDIR = opts.tmp ?? freshDir("tmp");
  const proc = Bun.spawn(argv, {
    cwd: opts.cwd ?? ROOT,
    env,
    stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), RUN_TIMEOUT_MS);
  try {
    const [code, stdout, stderr] = await Promise.all([
      proc.exited,
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
    ]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs install.sh from the source tree, as `sh install/install.sh ARGS`. */
const install = (args: string[], opts: RunOptions = {}) => run(["sh", SCRIPT, ...args], opts);

/**
 * A directory to use as PATH: every command of the current PATH except `without`, plus `extra`
 * scripts. Lets a test take curl or sha256sum away to exercise the fallbacks.
 */
function toolDir(without: string[], extra: Record<string, string> = {}): string {
  const dir = freshDir("bin");
  const seen = new Set<string>([...without, ...Object.keys(extra)]);
  for (const entry of (process.env.PATH ?? "/usr/bin:/bin").split(delimiter)) {
    if (!entry || !existsSync(entry)) continue;
    for (const name of readdirSync(entry)) {
      if (seen.has(name)) continue;
      seen.add(name);
      symlinkSync(join(entry, name), join(dir, name));
    }
  }
  for (const [name, text] of Object.entries(extra)) {
    writeFileSync(join(dir, name), text);
    chmodSync(join(dir, name), 0o755);
  }
  return dir;
}

/** Every file and directory under `dir`, relative, sorted. */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true }) as string[]).sort();
}

/** The checks every successful install must pass. */
function expectInstalled(prefix: string, opts: { units: boolean }) {
  const bin = join(prefix, "usr", "local", "bin", "wolf");
  expect(existsSync(bin)).toBe(true);
  expect(sha256(readFileSync(bin))).toBe(sha256(binary));
  expect(mode(bin)).toBe(0o755);
  // No staged temp file left beside it.
  expect(readdirSync(join(prefix, "usr", "local", "bin"))).toEqual(["wolf"]);
  expect(mode(join(prefix, "etc", "wolf"))).toBe(0o700);
  for (const sub of ["scale", "disk", "net"]) expect(mode(join(prefix, "var", "lib", "wolf", sub))).toBe(0o700);
  const unitDir = join(prefix, "etc", "systemd", "system");
  if (opts.units) {
    for (const unit of UNITS) {
      expect(readFileSync(join(unitDir, unit), "utf8")).toBe(readFileSync(join(UNITS_DIR, unit), "utf8"));
      expect(mode(join(unitDir, unit))).toBe(0o644);
    }
    expect(readdirSync(unitDir).sort()).toEqual([...UNITS].sort());
  } else {
    expect(existsSync(unitDir)).toBe(false);
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "wolf-install-test-"));
  const release = await loadRelease();
  binary = release.bin;
  scriptText = readFileSync(SCRIPT, "utf8");
  const routes = buildRoutes(release.bin, release.sumFile);
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const body = routes.get(new URL(req.url).pathname);
      return body === undefined ? new Response("not found\n", { status: 404 }) : new Response(body);
    },
  });
  baseUrl = `http://127.0.0.1:${server.port}`;
}, SETUP_TIMEOUT_MS);

afterAll(async () => {
  await server?.stop(true);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("release artifacts", () => {
  test(
    "the .sha256 beside the binary is '<hex>  <name>' and matches it",
    async () => {
      const res = await fetch(`${baseUrl}/good/${BIN_NAME}.sha256`);
      expect(await res.text()).toBe(`${sha256(binary)}  ${BIN_NAME}\n`);
    },
    TEST_TIMEOUT_MS,
  );
});

describe("install.sh", () => {
  test(
    "installs the binary, directories and units under --prefix",
    async () => {
      const prefix = freshDir("prefix");
      const tmp = freshDir("tmp");
      const r = await install(["--prefix", prefix], { baseUrl: `${baseUrl}/good`, tmp });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expectInstalled(prefix, { units: true });
      expect(r.stdout).toContain("systemctl enable --now wolf-scale");
      expect(r.stdout).toContain("wolf scale init");
      // Its temp dir is gone.
      expect(tree(tmp)).toEqual([]);

      const version = await run([join(prefix, "usr", "local", "bin", "wolf"), "--version"]);
      expect({ code: version.code, stderr: version.stderr }).toEqual({ code: 0, stderr: "" });
      expect(version.stdout).toContain(VERSION);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "reinstalling replaces the binary and units but keeps existing config",
    async () => {
      const prefix = freshDir("prefix");
      const first = await install(["--prefix", prefix], { baseUrl: `${baseUrl}/good` });
      expect(first.code).toBe(0);
      const config = join(prefix, "etc", "wolf", "scale.toml");
      writeFileSync(config, 'cluster_name = "mine"\n');
      writeFileSync(join(prefix, "usr", "local", "bin", "wolf"), "old binary");
      const second = await install([`--prefix=${prefix}`], { baseUrl: `${baseUrl}/good` });
      expect(second.stderr).toBe("");
      expect(second.code).toBe(0);
      expectInstalled(prefix, { units: true });
      expect(readFileSync(config, "utf8")).toBe('cluster_name = "mine"\n');
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "--base-url and --no-systemd",
    async () => {
      const prefix = freshDir("prefix");
      const r = await install(["--prefix", prefix, "--base-url", `${baseUrl}/good/`, "--no-systemd"], {
        baseUrl: `${baseUrl}/missing`, // --base-url wins over the environment
      });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expectInstalled(prefix, { units: false });
      expect(r.stdout).not.toContain("systemctl");
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "works with the script on stdin (curl | sh -s -- ...)",
    async () => {
      const prefix = freshDir("prefix");
      const r = await run(["sh", "-s", "--", "--prefix", prefix], { baseUrl: `${baseUrl}/good`, stdin: scriptText });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expectInstalled(prefix, { units: true });
    },
    TEST_TIMEOUT_MS,
  );

  test.skipIf(!which("curl"))(
    "works literally as curl -fsSL <url>/install.sh | sh",
    async () => {
      const prefix = freshDir("prefix");
      const r = await run(
        [
          "sh",
          "-c",
          'curl -fsSL "$1/install.sh" | WOLF_BASE_URL="$1" sh -s -- --prefix "$2"',
          "sh",
          `${baseUrl}/good`,
          prefix,
        ],
        {},
      );
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expectInstalled(prefix, { units: true });
    },
    TEST_TIMEOUT_MS,
  );

  for (const [variant, what] of [
    ["tampered", "a tampered binary"],
    ["wrongsum", "a wrong .sha256"],
  ] as const) {
    test(
      `refuses ${what} and installs nothing`,
      async () => {
        const prefix = freshDir("prefix");
        const tmp = freshDir("tmp");
        const r = await install(["--prefix", prefix], { baseUrl: `${baseUrl}/${variant}`, tmp });
        expect(r.code).not.toBe(0);
        expect(r.stderr).toContain(`wolf-install: error: checksum mismatch for ${BIN_NAME}`);
        expect(r.stderr).toContain("nothing was installed");
        expect(tree(prefix)).toEqual([]);
        expect(tree(tmp)).toEqual([]);
      },
      TEST_TIMEOUT_MS,
    );
  }

  test(
    "refuses a checksum file that is not one (wrong base URL serving a web page)",
    async () => {
      const prefix = freshDir("prefix");
      const r = await install(["--prefix", prefix], { baseUrl: `${baseUrl}/malformed` });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`wolf-install: error: checksum file ${BIN_NAME}.sha256 is malformed`);
      expect(tree(prefix)).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a base URL that answers 404 is a clear error",
    async () => {
      const prefix = freshDir("prefix");
      const tmp = freshDir("tmp");
      const r = await install(["--prefix", prefix], { baseUrl: `${baseUrl}/missing`, tmp });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`wolf-install: error: could not download ${baseUrl}/missing/${BIN_NAME}`);
      expect(tree(prefix)).toEqual([]);
      expect(tree(tmp)).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "an unknown option or a missing value is a clear error",
    async () => {
      const unknown = await install(["--frobnicate"], { baseUrl: `${baseUrl}/good` });
      expect(unknown.code).not.toBe(0);
      expect(unknown.stderr).toContain("wolf-install: error: unknown option '--frobnicate'");
      const missing = await install(["--prefix"], { baseUrl: `${baseUrl}/good` });
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toContain("wolf-install: error: option --prefix needs a value");
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "--help describes the options and exits 0",
    async () => {
      const r = await install(["--help"]);
      expect(r.code).toBe(0);
      for (const opt of ["--prefix", "--version", "--base-url", "--no-systemd", "WOLF_BASE_URL"]) {
        expect(r.stdout).toContain(opt);
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "downloads from the GitHub release location by default, or the tagged one with --version",
    async () => {
      // A fake curl records what it was asked for and fails, so no traffic leaves the machine.
      const log = join(freshDir("curl-log"), "urls");
      const path = toolDir(["curl", "wget"], {
        curl: `#!/bin/sh\nfor a; do last=$a; done\nprintf '%s\\n' "$last" >> '${log}'\nexit 22\n`,
      });
      const latest = await install(["--prefix", freshDir("prefix")], { path });
      expect(latest.code).not.toBe(0);
      const tagged = await install(["--prefix", freshDir("prefix"), "--version", "1.2.3"], { path });
      expect(tagged.code).not.toBe(0);
      const releases = "https://github.com/wolf-cluster/wolf/releases";
      expect(readFileSync(log, "utf8").trim().split("\n")).toEqual([
        `${releases}/latest/download/${BIN_NAME}.sha256`,
        `${releases}/download/v1.2.3/${BIN_NAME}.sha256`,
      ]);
      expect(tagged.stderr).toContain(
        `wolf-install: error: could not download ${releases}/download/v1.2.3/${BIN_NAME}.sha256`,
      );
    },
    TEST_TIMEOUT_MS,
  );

  test.skipIf(!which("wget") || !which("shasum"))(
    "falls back to wget and shasum, and still verifies",
    async () => {
      const path = toolDir(["curl", "sha256sum"]);
      const prefix = freshDir("prefix");
      const ok = await install(["--prefix", prefix], { baseUrl: `${baseUrl}/good`, path });
      expect(ok.stderr).toBe("");
      expect(ok.code).toBe(0);
      expectInstalled(prefix, { units: true });

      const refused = freshDir("prefix");
      const bad = await install(["--prefix", refused], { baseUrl: `${baseUrl}/tampered`, path });
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toContain("wolf-install: error: checksum mismatch");
      expect(tree(refused)).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "without curl or wget it says so",
    async () => {
      const prefix = freshDir("prefix");
      const r = await install(["--prefix", prefix], { baseUrl: `${baseUrl}/good`, path: toolDir(["curl", "wget"]) });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("wolf-install: error: neither curl nor wget is installed");
      expect(tree(prefix)).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );

  test.skipIf(process.getuid?.() !== 0 || !which("setpriv"))(
    "refuses to install to / as non-root",
    async () => {
      const r = await run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-s", "--"], {
        baseUrl: `${baseUrl}/good`,
        stdin: scriptText,
        tmp: "/tmp",
        cwd: "/",
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("wolf-install: error: installing to / needs root");
    },
    TEST_TIMEOUT_MS,
  );
});

describe("systemd units", () => {
  test("each unit runs the installed binary with its config", () => {
    const text = (u: string) => readFileSync(join(UNITS_DIR, u), "utf8");
    expect(text("wolf-scale.service")).toContain(
      "ExecStart=/usr/local/bin/wolf scale start --config /etc/wolf/scale.toml\n",
    );
    expect(text("wolf-disk@.service")).toContain(
      "ExecStart=/usr/local/bin/wolf disk mount --config /etc/wolf/disk.toml --drive %i\n",
    );
    expect(text("wolf-disk@.service")).toContain("ExecStopPost=-/usr/local/bin/wolf disk unmount");
    expect(text("wolf-net.service")).toContain("ExecStart=/usr/local/bin/wolf net up --config /etc/wolf/net.toml\n");
    for (const u of UNITS) {
      for (const line of ["Type=simple", "Restart=on-failure", "KillSignal=SIGTERM", "WantedBy=multi-user.target"]) {
        expect(text(u)).toContain(`\n${line}\n`);
      }
    }
    // A private mount namespace would hide the FUSE mount from the rest of the system.
    expect(text("wolf-disk@.service")).not.toMatch(
      /^(ProtectSystem|ProtectHome|PrivateTmp|PrivateDevices|PrivateMounts)=/m,
    );
  });

  const systemUnits = "/usr/lib/systemd/system";
  test.skipIf(!which("systemd-analyze") || !existsSync(systemUnits))(
    "pass systemd-analyze verify",
    async () => {
      // Verify inside an installed prefix (with the stock units it depends on), so ExecStart's
      // /usr/local/bin/wolf resolves to the installed binary rather than to this machine's.
      const prefix = freshDir("prefix");
      const r = await install(["--prefix", prefix], { baseUrl: `${baseUrl}/good` });
      expect(r.code).toBe(0);
      cpSync(systemUnits, join(prefix, systemUnits), { recursive: true, verbatimSymlinks: true });
      const verify = await run([
        "systemd-analyze",
        `--root=${prefix}`,
        "verify",
        "wolf-scale.service",
        "wolf-disk@data.service",
        "wolf-net.service",
      ]);
      // verify exits 0 on unknown keys or bad values and only warns, so the output must be clean.
      expect(verify.stdout + verify.stderr).toBe("");
      expect(verify.code).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );
});
