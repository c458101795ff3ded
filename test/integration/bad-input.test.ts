/**
 * Bad input never crashes the binary: every case below gets one clear line on stderr (no stack
 * trace, no crash banner, no "undefined"), nothing on stdout, and the documented exit code
 * (2 usage, 4 config, 5 io, 6 network, 9 state). Runs the compiled dist/wolf the way users do.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBuilt, freePort, runWolf, runWolfOnce, WOLF_BIN } from "../harness/index.ts";

let dir: string;
/** Fixture paths, filled in beforeAll. */
const f = {} as Record<
  "scale" | "disk" | "net" | "garbage" | "empty" | "unreadable" | "folder" | "file" | "junkKey" | "invite",
  string
>;

/** Runs wolf with config defaults pointing into the test dir (never /etc/wolf). */
function wolf(args: string[], opts: { stdin?: string; asNobody?: boolean } = {}) {
  const nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", WOLF_BIN];
  return runWolfOnce(args, {
    stdin: opts.stdin,
    env: { WOLF_CONFIG_DIR: join(dir, "etc"), NO_COLOR: "1", WOLF_LOG_LEVEL: "warn" },
    timeoutMs: 15_000,
    ...(opts.asNobody ? { command: nobody } : {}),
  });
}

const b64url = (text: string) => Buffer.from(text).toString("base64url");

beforeAll(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "wolf-bad-input-"));
  chmodSync(dir, 0o755); // the "as nobody" cases must reach the unreadable file to be refused by it
  f.scale = join(dir, "scale.toml");
  f.disk = join(dir, "disk.toml");
  f.net = join(dir, "net", "net.toml");
  const inits = await Promise.all([
    wolf(["scale", "init", "--config", f.scale, "--node-id", "1"]),
    wolf(["disk", "init", "--config", f.disk]),
    wolf(["net", "init", "--config", f.net]),
  ]);
  for (const r of inits) expect(r.code).toBe(0);
  // Nothing answers on the scale API port or on MariaDB's port: "daemon not running" for real.
  const apiPort = await freePort();
  writeFileSync(
    f.scale,
    readFileSync(f.scale, "utf8")
      .replace(/^listen = "127\.0\.0\.1:8080"$/m, `listen = "127.0.0.1:${apiPort}"`)
      .replace(/^port = 3306$/m, `port = ${await freePort()}`)
      .replace(/^data_dir = .*$/m, `data_dir = "${join(dir, "scale-data")}"`),
  );
  writeFileSync(
    f.disk,
    `${readFileSync(f.disk, "utf8").replace(/^data_dir = .*$/m, `data_dir = "${join(dir, "disk-data")}"`)}\n[[drives]]\nname = "d1"\n`,
  );
  writeFileSync((f.garbage = join(dir, "garbage.toml")), Buffer.from([0, 1, 2, 0xff, 0xfe, 0x41, 0x0a]));
  writeFileSync((f.empty = join(dir, "empty.toml")), "");
  writeFileSync((f.unreadable = join(dir, "unreadable.toml")), "[node]\n");
  chmodSync(f.unreadable, 0o000);
  mkdirSync((f.folder = join(dir, "folder")));
  writeFileSync((f.file = join(dir, "a-file")), "not a directory\n");
  writeFileSync((f.junkKey = join(dir, "junk.key")), "not a key\n", { mode: 0o600 });
  const netKey = readFileSync(join(dir, "net", "net.key"), "utf8").trim();
  const pub = (await wolf(["net", "pubkey"], { stdin: `${netKey}\n` })).stdout.trim();
  // A well-formed invite from another node whose endpoint nothing answers on.
  f.invite = `wolfnet1:${b64url(JSON.stringify({ e: "127.0.0.1:9", a: "10.0.10.2", s: "10.0.10.0/24", i: "10.0.10.1", k: pub, x: b64url("x".repeat(32)) }))}`;
}, 60_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Case {
  args: () => string[];
  code: number;
  /** What stderr must say. */
  says: RegExp;
  stdin?: string;
  asNobody?: boolean;
}

function check(name: string, c: Case): void {
  test(name, async () => {
    const r = await wolf(c.args(), { stdin: c.stdin, asNobody: c.asNobody });
    const context = `wolf ${c.args().join(" ")}\n--- stderr ---\n${r.stderr}`;
    expect(r.stderr, context).toMatch(c.says);
    expect(r.stderr, context).toMatch(/^wolf: error: /m);
    expect(r.stderr, context).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.stderr, context).not.toMatch(/undefined|Bun v\d|\d+ \| /); // no undefined, crash banner or source dump
    expect(r.stdout, context).toBe("");
    expect(r.code, context).toBe(c.code);
  });
}

describe("command line", () => {
  check("no verb", { args: () => [], code: 2, says: /missing command/ });
  check("unknown verb, with a suggestion", {
    args: () => ["scale", "strat"],
    code: 2,
    says: /unknown command "strat".*did you mean "start"/,
  });
  check("unknown option, with a suggestion", {
    args: () => ["ctl", "net", "peers", "--jsn"],
    code: 2,
    says: /unknown option "--jsn".*did you mean "--json"/,
  });
  check("option without its value", {
    args: () => ["net", "init", "--config"],
    code: 2,
    says: /option "--config" needs a value/,
  });
  check("extra positional argument", {
    args: () => ["net", "genkey", "extra"],
    code: 2,
    says: /unexpected argument "extra": "wolf net genkey" takes no arguments/,
  });
  check("extra positional after the expected one", {
    args: () => ["ctl", "scale", "list", "servers", "more", "--config", f.scale],
    code: 2,
    says: /unexpected argument "more"/,
  });
  check("empty --config", {
    args: () => ["scale", "validate", "--config", ""],
    code: 2,
    says: /--config needs a file path/,
  });
  check("bad enum value", {
    args: () => ["disk", "mount", "--config", f.disk, "--role", "bogus"],
    code: 2,
    says: /--role.*auto, leader, follower, client/,
  });
  check("missing required positional", {
    args: () => ["net", "join", "--config", join(dir, "j0", "net.toml")],
    code: 2,
    says: /Missing required positional argument/,
  });
});

describe("config files, every subsystem", () => {
  for (const sub of ["scale", "disk", "net"] as const) {
    check(`${sub}: missing file names the init command`, {
      args: () => [sub, "validate", "--config", join(dir, "nope.toml")],
      code: 4,
      says: new RegExp(`file not found\\n  hint: create it with: wolf ${sub} init`),
    });
    check(`${sub}: a directory`, {
      args: () => [sub, "validate", "--config", f.folder],
      code: 4,
      says: /is a directory, not a config file/,
    });
    check(`${sub}: binary garbage`, {
      args: () => [sub, "validate", "--config", f.garbage],
      code: 4,
      says: /not valid TOML/,
    });
    check(`${sub}: a device`, {
      args: () => [sub, "validate", "--config", "/dev/zero"],
      code: 4,
      says: /not a regular file/,
    });
    check(`${sub}: init into a directory`, {
      args: () => [sub, "init", "--config", f.folder],
      code: 4,
      says: /is a directory/,
    });
    check(`${sub}: init where nothing can be written`, {
      args: () => [sub, "init", "--config", "/proc/wolf-test/x.toml"],
      code: 5,
      says: /cannot write \/proc\/wolf-test\/x\.toml: /,
    });
    test.skipIf(process.getuid?.() !== 0)(`${sub}: unreadable file (as nobody)`, async () => {
      const r = await wolf([sub, "validate", "--config", f.unreadable], { asNobody: true });
      expect(r.stderr).toContain(`${f.unreadable}: cannot read: permission denied`);
      expect(r.stderr).not.toContain("EACCES");
      expect(r.code).toBe(4);
    });
  }
  check("scale: an empty file lacks the secret", {
    args: () => ["scale", "validate", "--config", f.empty],
    code: 4,
    says: /cluster\.secret: missing key/,
  });
  check("scale: a net.toml", {
    args: () => ["scale", "start", "--config", f.net],
    code: 4,
    says: /unknown key "interface"/,
  });
  check("disk: a scale.toml", {
    args: () => ["disk", "mount", "--config", f.scale],
    code: 4,
    says: /unknown key "database"/,
  });
  check("net: a disk.toml", { args: () => ["net", "up", "--config", f.disk], code: 4, says: /unknown key "cluster"/ });
  check("ctl net: a directory", {
    args: () => ["ctl", "net", "peers", "--config", f.folder],
    code: 4,
    says: /is a directory/,
  });
});

describe("option values", () => {
  check("scale init --node-id out of range", {
    args: () => ["scale", "init", "--config", join(dir, "x1.toml"), "--node-id", "5000"],
    code: 2,
    says: /--node-id takes an integer from 1 to 1023, got "5000"/,
  });
  check("scale init --node-id abc names the option", {
    args: () => ["scale", "init", "--config", join(dir, "x2.toml"), "--node-id", "abc"],
    code: 2,
    says: /--node-id takes an integer from 1 to 1023, got "abc"/,
  });
  test("scale init --node-id '': usage error, not a silent default", async () => {
    const config = join(dir, "x3.toml");
    const r = await wolf(["scale", "init", "--config", config, "--node-id", ""]);
    expect(r.stderr).toContain('--node-id takes an integer from 1 to 1023, got ""');
    expect(r.code).toBe(2);
    expect(existsSync(config)).toBe(false);
  });
  check("scale join notanaddress: host:port checked before anything starts", {
    args: () => ["scale", "join", "--config", f.scale, "notanaddress"],
    code: 2,
    says: /wolf scale join: expected host:port like 10\.0\.0\.2:7654, got "notanaddress"\n {2}hint: /,
  });
  check("scale join with a port out of range", {
    args: () => ["scale", "join", "--config", f.scale, "127.0.0.1:70000"],
    code: 2,
    says: /expected host:port/,
  });
  check("net init --address 999.1.1.1", {
    args: () => ["net", "init", "--config", join(dir, "n1", "net.toml"), "--address", "999.1.1.1"],
    code: 4,
    says: /interface\.address: expected an IPv4 address/,
  });
  check("net init --subnet garbage", {
    args: () => ["net", "init", "--config", join(dir, "n2", "net.toml"), "--address", "10.1.1.1", "--subnet", "x"],
    code: 4,
    says: /interface\.subnet: expected an IPv4 network/,
  });
  check("net init: address outside the subnet is refused before writing", {
    args: () => [
      "net",
      "init",
      "--config",
      join(dir, "n3", "net.toml"),
      "--address",
      "10.1.1.1",
      "--subnet",
      "192.168.0.0/24",
    ],
    code: 4,
    says: /not inside subnet 192\.168\.0\.0\/24/,
  });
  check("net invite --ttl abc", {
    args: () => ["net", "invite", "--config", f.net, "--ttl", "abc"],
    code: 2,
    says: /--ttl takes a duration, got "abc"/,
  });
  check("net invite --endpoint without a port", {
    args: () => ["net", "invite", "--config", f.net, "--endpoint", "nope"],
    code: 2,
    says: /--endpoint takes host:port/,
  });
  check("net join --timeout 0", {
    args: () => ["net", "join", "--config", join(dir, "j1", "net.toml"), "--timeout", "0", f.invite],
    code: 2,
    says: /--timeout takes a duration/,
  });
  check("ctl scale stats --interval abc", {
    args: () => ["ctl", "scale", "stats", "--config", f.scale, "--interval", "abc"],
    code: 2,
    says: /--interval and --count take numbers/,
  });
  check("scale start --data-dir on a file", {
    args: () => ["scale", "start", "--config", f.scale, "--data-dir", f.file],
    code: 5,
    says: /a-file exists and is not a directory/,
  });
  // Refused before the TUN interface is created, so this is safe outside a namespace.
  check("net up --data-dir on a file", {
    args: () => ["net", "up", "--config", f.net, "--data-dir", f.file],
    code: 5,
    says: /cannot use .*a-file as the state directory/,
  });
});

describe("invite lines for net join", () => {
  const join1 = () => join(dir, "join", "net.toml");
  const line = (json: string) => `wolfnet1:${b64url(json)}`;
  for (const [name, token] of [
    ["empty", () => ""],
    ["wrong prefix", () => "wolfnet2:abcdef"],
    ["prefix only", () => "wolfnet1:"],
    ["truncated", () => f.invite.slice(0, 60)],
    ["valid base64 of junk JSON", () => line('{"hello":1}')],
    ["JSON null", () => line("null")],
    ["JSON array", () => line("[1,2]")],
    [
      "port out of range",
      () =>
        f.invite.replace(/^wolfnet1:(.*)$/, (_, b) =>
          line(Buffer.from(b, "base64url").toString().replace("127.0.0.1:9", "127.0.0.1:99999")),
        ),
    ],
  ] as const) {
    check(`${name}: not a valid invite line`, {
      args: () => ["net", "join", "--config", join1(), token()],
      code: 2,
      says: /not a valid invite line/,
    });
  }
  check("nobody answers at the inviter's endpoint", {
    args: () => ["net", "join", "--config", join(dir, "join2", "net.toml"), "--timeout", "1s", f.invite],
    code: 6,
    says: /no answer from the inviter at 127\.0\.0\.1:9 within 1 s/,
  });
  check("an invite this node made itself", {
    args: () => ["net", "join", "--config", f.net, "--timeout", "1s", f.invite],
    code: 2,
    says: /made by this node itself/,
  });
});

describe("keys", () => {
  check("net pubkey: garbage on stdin", {
    args: () => ["net", "pubkey"],
    stdin: "not a key\n",
    code: 2,
    says: /the private key on stdin is not a 32-byte base64 key/,
  });
  check("net pubkey: binary on stdin", {
    args: () => ["net", "pubkey"],
    stdin: "\u0000\u0001\u00ff".repeat(10),
    code: 2,
    says: /not a 32-byte base64 key/,
  });
  check("net pubkey: too much on stdin", {
    args: () => ["net", "pubkey"],
    stdin: "A".repeat(10_000),
    code: 2,
    says: /more than 4096 bytes on stdin/,
  });
  test("net token: a garbage key file", async () => {
    const config = join(dir, "badkey", "net.toml");
    expect((await wolf(["net", "init", "--config", config])).code).toBe(0);
    writeFileSync(join(dir, "badkey", "net.key"), "not a key\n", { mode: 0o600 });
    const r = await wolf(["net", "token", "--config", config]);
    expect(r.stderr).toContain("is not a 32-byte base64 key");
    expect(r.stdout).toBe("");
    expect(r.code).toBe(4);
    chmodSync(join(dir, "badkey", "net.key"), 0o644);
    const open = await wolf(["net", "token", "--config", config]);
    expect(open.stderr).toContain("readable by others (mode 644)");
    expect(open.code).toBe(4);
  });
});

describe("no daemon running", () => {
  const notRunning =
    /the wolf net daemon is not running \(no control socket at .*net\.sock\)\n {2}hint: start it with `wolf net up --config /;
  for (const verb of ["status", "peers", "info"]) {
    check(`ctl net ${verb}`, { args: () => ["ctl", "net", verb, "--config", f.net], code: 9, says: notRunning });
  }
  check("net invite", { args: () => ["net", "invite", "--config", f.net], code: 9, says: notRunning });
  test("ctl net peers: a stale socket file from a killed daemon", async () => {
    const socket = join(dir, "net", "net.sock");
    writeFileSync(socket, "");
    try {
      const r = await wolf(["ctl", "net", "peers", "--config", f.net]);
      expect(r.stderr).toContain(`the wolf net daemon is not running (nothing listens on ${socket}`);
      expect(r.code).toBe(9);
    } finally {
      rmSync(socket, { force: true });
    }
  });
  const scaleDown =
    /the wolf scale daemon is not running \(nothing answers at http:\/\/127\.0\.0\.1:\d+\)\n {2}hint: start it with: wolf scale start --config .*scale\.toml/;
  check("ctl scale list servers", {
    args: () => ["ctl", "scale", "list", "servers", "--config", f.scale],
    code: 9,
    says: scaleDown,
  });
  check("ctl scale status", { args: () => ["ctl", "scale", "status", "--config", f.scale], code: 9, says: scaleDown });
  check("scale status", { args: () => ["scale", "status", "--config", f.scale], code: 9, says: scaleDown });
  const mariadbDown =
    /cannot connect to MariaDB at 127\.0\.0\.1:\d+: connection refused \(ECONNREFUSED\)\n {2}hint: is MariaDB running\? check \[database\] host\/port\/socket in .*scale\.toml/;
  check("ctl scale check-config, MariaDB unreachable", {
    args: () => ["ctl", "scale", "check-config", "--config", f.scale],
    code: 6,
    says: mariadbDown,
  });
  check("ctl scale binlog-setup, MariaDB unreachable", {
    args: () => ["ctl", "scale", "binlog-setup", "--config", f.scale],
    code: 6,
    says: mariadbDown,
  });
  test("scale start with MariaDB unreachable: says why (ECONNREFUSED …) while waiting", async () => {
    const daemon = runWolf(["scale", "start", "--config", f.scale], {
      env: { WOLF_CONFIG_DIR: join(dir, "etc"), NO_COLOR: "1", WOLF_LOG_LEVEL: "warn" },
    });
    try {
      const [line] = await daemon.waitForOutput(
        /cannot connect to MariaDB at 127\.0\.0\.1:\d+: connection refused \(ECONNREFUSED\)[^\n]*/,
        10_000,
      );
      expect(line).toContain(`check [database] host/port/socket in ${f.scale}`);
      expect(line).toMatch(/giving up in \d+ s/);
      expect(daemon.running).toBe(true);
    } finally {
      await daemon.stop(2000);
    }
  });
  check("ctl disk status is not built yet", {
    args: () => ["ctl", "disk", "status", "--config", f.disk],
    code: 3,
    says: /not built yet/,
  });
});

describe("features that are configured but not built yet fail instead of being ignored", () => {
  /** A copy of `file` with `enabled = true` in its [section]. */
  const enabling = (file: string, section: string) => {
    const text = readFileSync(file, "utf8");
    const at = text.indexOf(`\n[${section}]\n`);
    const out = join(dir, `unbuilt-${section}.toml`);
    writeFileSync(out, text.slice(0, at) + text.slice(at).replace(/^enabled = false$/m, "enabled = true"));
    return out;
  };
  check("scale start with proxy.enabled = true", {
    args: () => ["scale", "start", "--config", enabling(f.scale, "proxy")],
    code: 3,
    says: /proxy\.enabled = true.*not built yet/,
  });
  check("disk mount with s3.enabled = true", {
    args: () => ["disk", "mount", "--config", enabling(f.disk, "s3"), "-m", join(dir, "s3mnt")],
    code: 3,
    says: /s3\.enabled = true.*not built yet/,
  });
});

describe("disk mounts", () => {
  check("mount on a file", {
    args: () => ["disk", "mount", "--config", f.disk, "-m", f.file],
    code: 2,
    says: /a-file is not a directory/,
  });
  check("mount an unknown drive", {
    args: () => ["disk", "mount", "--config", f.disk, "--drive", "nope", "-m", f.folder],
    code: 2,
    says: /no drive named "nope"/,
  });
  check("unmount something not mounted", {
    args: () => ["disk", "unmount", "-m", f.folder],
    code: 9,
    says: /folder is not mounted/,
  });
  check("mount under a parent that does not exist (a typo is not mkdir -p'd)", {
    args: () => ["disk", "mount", "--config", f.disk, "-m", "/no/such/parent/dir"],
    code: 2,
    says: /\/no\/such\/parent does not exist/,
  });
  check("unmount a path that does not exist", {
    args: () => ["disk", "unmount", "-m", "/no/such/mnt"],
    code: 2,
    says: /\/no\/such\/mnt does not exist/,
  });
  check("unmount without -m", {
    args: () => ["disk", "unmount"],
    code: 2,
    says: /Missing required argument: --mountpoint/,
  });
});
