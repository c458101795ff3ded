/** The compiled binary's command line: help, version, init/validate, errors and exit codes. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { version } from "../../package.json";
import { ensureBuilt, runWolfOnce } from "../harness/wolf.ts";

const ANSI = /\x1b\[[0-9;]*m/;
let dir: string;

beforeAll(async () => {
  await ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "wolf-cli-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("wolf CLI", () => {
  test("--help lists the four subcommands, without colours when piped", async () => {
    const r = await runWolfOnce(["--help"]);
    expect(r.code).toBe(0);
    for (const sub of ["scale", "disk", "net", "ctl"]) expect(r.stdout).toMatch(new RegExp(`^\\s+${sub}\\s`, "m"));
    expect(r.stdout).not.toMatch(ANSI);
    expect(r.stdout).not.toContain("internal");
  });

  test("NO_COLOR is respected even with FORCE_COLOR unset on a pipe", async () => {
    const r = await runWolfOnce(["scale", "--help"], { env: { NO_COLOR: "true" } });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(ANSI);
    for (const verb of ["init", "start", "join", "status", "info", "validate", "proxy", "lb"])
      expect(r.stdout).toContain(verb);
  });

  test("FORCE_COLOR=0 or false on a pipe is no colour (seen coloured when a CI variable was absent); NO_COLOR beats FORCE_COLOR", async () => {
    // CI="" so citty's own "no colours on CI" rule does not hide the case.
    const help = async (env: Record<string, string>) =>
      (await runWolfOnce(["--help"], { env: { CI: "", ...env } })).stdout;
    expect(await help({ FORCE_COLOR: "0" })).not.toMatch(ANSI);
    expect(await help({ FORCE_COLOR: "false" })).not.toMatch(ANSI);
    expect(await help({ FORCE_COLOR: "1", NO_COLOR: "yes" })).not.toMatch(ANSI);
  });

  test("--version prints the package version", async () => {
    const r = await runWolfOnce(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith(`wolf ${version} `);
  });

  test("every subsystem lists its product verbs", async () => {
    const verbs: Record<string, string[]> = {
      disk: ["init", "mount", "unmount", "status"],
      net: ["init", "genkey", "pubkey", "token", "invite", "join", "up"],
      "ctl scale": [
        "list",
        "status",
        "stats",
        "promote",
        "demote",
        "check-config",
        "migrate",
        "binlog-setup",
        "tune-mariadb",
        "reset",
        "log-level",
      ],
      "ctl disk": ["status", "list", "stats"],
      "ctl net": ["status", "peers", "info"],
    };
    for (const [path, expected] of Object.entries(verbs)) {
      const r = await runWolfOnce([...path.split(" "), "--help"]);
      expect(r.code).toBe(0);
      for (const verb of expected) expect(r.stdout).toMatch(new RegExp(`^\\s+${verb}\\s`, "m"));
    }
  });

  for (const sub of ["scale", "disk", "net"]) {
    test(`${sub} init writes a 0600 config that ${sub} validate accepts; a typo is rejected naming the nearest key`, async () => {
      const file = join(dir, `${sub}.toml`);
      const init = await runWolfOnce([sub, "init", "--config", file]);
      expect(init.code).toBe(0);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const ok = await runWolfOnce([sub, "validate", "--config", file]);
      expect(ok.stdout).toContain(`${file}: ok`);
      expect(ok.code).toBe(0);

      const again = await runWolfOnce([sub, "init", "--config", file]);
      expect(again.code).toBe(4);
      expect(again.stderr).toContain("--force");

      const text = readFileSync(file, "utf8");
      const [key] = /^[a-z_]+(?= = )/m.exec(text)!;
      const typo = `${key.slice(0, 2)}${key[3]}${key[2]}${key.slice(4)}`; // swap two letters
      writeFileSync(file, text.replace(new RegExp(`^${key} = `, "m"), `${typo} = `));
      const bad = await runWolfOnce([sub, "validate", "--config", file]);
      expect(bad.code).toBe(4);
      expect(bad.stdout).toBe("");
      expect(bad.stderr).toContain(`unknown key "${typo}"; did you mean "`);
      expect(bad.stderr).toContain(`${key}"?`);
    });
  }

  test("a bad value names file, key and reason", async () => {
    const file = join(dir, "bad-value.toml");
    await runWolfOnce(["scale", "init", "--config", file]);
    writeFileSync(file, readFileSync(file, "utf8").replace(/^heartbeat_ms = .*$/m, "heartbeat_ms = -5"));
    const r = await runWolfOnce(["scale", "validate", "--config", file]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`${file}: cluster.heartbeat_ms: must be at least 50, got -5`);
  });

  test("init options land in the file (net --address, scale --node-id)", async () => {
    const netFile = join(dir, "net-addr.toml");
    expect((await runWolfOnce(["net", "init", "--config", netFile, "--address", "10.0.10.7"])).code).toBe(0);
    expect(readFileSync(netFile, "utf8")).toMatch(/^address = "10.0.10.7"/m);
    const scaleFile = join(dir, "scale-id.toml");
    expect((await runWolfOnce(["scale", "init", "--config", scaleFile, "--node-id", "3"])).code).toBe(0);
    expect(readFileSync(scaleFile, "utf8")).toMatch(/^node_id = 3/m);
    const bad = await runWolfOnce(["scale", "init", "--config", join(dir, "x.toml"), "--node-id", "5000"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--node-id takes an integer from 1 to 1023, got "5000"');
  });

  test("missing config file: clear error with the command that creates it", async () => {
    const r = await runWolfOnce(["disk", "validate", "--config", join(dir, "nope.toml")]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain("file not found");
    expect(r.stderr).toContain("wolf disk init --config");
  });

  test("unknown command and unknown option: exit 2 with a suggestion on stderr", async () => {
    const cmd = await runWolfOnce(["scael"]);
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toContain('did you mean "scale"');
    const opt = await runWolfOnce(["net", "init", "--adress", "10.0.0.1"]);
    expect(opt.code).toBe(2);
    expect(opt.stderr).toContain('did you mean "--address"');
    const missing = await runWolfOnce(["ctl"]);
    expect(missing.code).toBe(2);
  });
});

test("Workers are embedded in the compiled binary", async () => {
  const r = await runWolfOnce(["internal", "worker-check"]);
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).echo).toBe("ping");
});
