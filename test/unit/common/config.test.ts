import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  bool,
  type ConfigSchema,
  type Fields,
  defaultConfig,
  defineSchema,
  generatedValues,
  int,
  loadConfig,
  nearest,
  oneOf,
  parseConfig,
  renderConfig,
  section,
  str,
  strList,
  tables,
  writeConfigFile,
} from "../../../lib/common/config/index.ts";
import { ConfigError } from "../../../lib/common/errors.ts";
import { diskSchema } from "../../../lib/disk/config.ts";
import { netSchema } from "../../../lib/net/config.ts";
import { scaleSchema } from "../../../lib/scale/config.ts";

const schema = defineSchema("demo", "A demo config.", {
  top: int("A top-level key.", 3, { min: 1, max: 10 }),
  server: section("Server settings.", {
    listen_port: int("Port.", 9600, { min: 1, max: 65535 }),
    mode: oneOf("Mode", ["fast", "safe"] as const, "safe"),
    verbose: bool("Verbose.", false),
    hosts: strList("Hosts.", []),
    token: str("Token.", "", { secret: true, generate: () => "generated-token-value", pattern: /^[a-z-]*$/ }),
  }),
  peers: tables(
    "Peers.",
    { name: str("Name.", "", { required: true, pattern: /^[a-z]+$/ }), weight: int("Weight.", 1) },
    { name: "alpha" },
  ),
});

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("config schema", () => {
  test("missing keys take their defaults; types are inferred", () => {
    const config = parseConfig(schema, '[server]\nmode = "fast"\n', "a.toml");
    expect(config.top).toBe(3);
    expect(config.server.mode).toBe("fast");
    expect(config.server.listen_port).toBe(9600);
    expect(config.peers).toEqual([]);
  });

  test("an unknown key names the nearest valid key", () => {
    const err = errorOf(() => parseConfig(schema, "[server]\nlisten_prot = 1\n", "/etc/wolf/demo.toml"));
    expect(err.message).toContain("/etc/wolf/demo.toml");
    expect(err.message).toContain('did you mean "server.listen_port"');
    expect(err.key).toBe("server.listen_prot");
  });

  test("an unknown section names the nearest section", () => {
    expect(errorOf(() => parseConfig(schema, "[sever]\n", "a.toml")).message).toContain('did you mean "server"');
  });

  test("a key in the wrong section points to where it belongs", () => {
    const err = errorOf(() => parseConfig(schema, "listen_port = 1\n", "a.toml"));
    expect(err.message).toContain('"server.listen_port" exists in another section');
  });

  test("bad values are rejected with file, key and reason", () => {
    expect(errorOf(() => parseConfig(schema, "top = 11\n", "a.toml")).message).toBe(
      "a.toml: top: must be at most 10, got 11",
    );
    expect(errorOf(() => parseConfig(schema, 'top = "3"\n', "a.toml")).message).toContain(
      'expected an integer, got string "3"',
    );
    expect(errorOf(() => parseConfig(schema, '[server]\nmode = "slow"\n', "a.toml")).message).toContain(
      "expected one of fast | safe",
    );
    expect(errorOf(() => parseConfig(schema, "[server]\nhosts = [1]\n", "a.toml")).message).toContain(
      "item 0: expected a string",
    );
    expect(errorOf(() => parseConfig(schema, "server = 1\n", "a.toml")).message).toContain("expected a [server] table");
  });

  test("secret values are never echoed in errors", () => {
    const err = errorOf(() => parseConfig(schema, '[server]\ntoken = "Sup3r$ecret"\n', "a.toml"));
    expect(err.message).not.toContain("Sup3r$ecret");
  });

  test("table arrays: required keys, per-entry paths", () => {
    const ok = parseConfig(schema, '[[peers]]\nname = "a"\n[[peers]]\nname = "b"\nweight = 2\n', "a.toml");
    expect(ok.peers).toEqual([
      { name: "a", weight: 1 },
      { name: "b", weight: 2 },
    ]);
    expect(errorOf(() => parseConfig(schema, "[[peers]]\nweight = 2\n", "a.toml")).message).toContain(
      'peers[0].name: missing required key "name"',
    );
    expect(errorOf(() => parseConfig(schema, '[[peers]]\nname = "a"\nwieght = 2\n', "a.toml")).message).toContain(
      'did you mean "peers[0].weight"',
    );
  });

  test("TOML syntax errors name the file and line", () => {
    const err = errorOf(() => parseConfig(schema, "top = 1\n[server\n", "bad.toml"));
    expect(err.message).toContain("bad.toml");
    expect(err.message).toContain("not valid TOML");
  });

  test("render → parse round-trips, with generated values and every key documented", () => {
    const text = renderConfig(schema, generatedValues(schema));
    const config = parseConfig(schema, text, "a.toml");
    expect(config.server.token).toBe("generated-token-value");
    expect(config.top).toBe(3);
    for (const key of ["top", "listen_port", "mode", "verbose", "hosts", "token"])
      expect(text).toMatch(new RegExp(`^${key} = `, "m"));
    expect(text).toContain("# [[peers]]");
    expect(text).toContain("# Port.");
  });

  test("nearest() finds typos and transpositions but not unrelated words", () => {
    expect(nearest("heartbeet_ms", ["heartbeat_ms", "port"])).toBe("heartbeat_ms");
    expect(nearest("prot", ["port", "peers"])).toBe("port");
    expect(nearest("zzzzzz", ["port", "peers"])).toBeUndefined();
  });
});

describe("subsystem schemas", () => {
  for (const s of [scaleSchema, diskSchema, netSchema] as ConfigSchema<Fields>[]) {
    test(`${s.name}: the file init writes validates, with generated secrets`, () => {
      const text = renderConfig(s, generatedValues(s));
      const config = parseConfig(s, text, `${s.name}.toml`) as Record<string, any>;
      if ("cluster" in config) expect(config.cluster.secret).toMatch(/^[0-9a-f]{64}$/);
    });
    test(`${s.name}: defaults alone are not enough where a secret must be generated`, () => {
      if (s === netSchema) return expect(() => defaultConfig(s)).not.toThrow();
      // An empty secret would mean an unauthenticated cluster: refuse it.
      expect(() => defaultConfig(s)).toThrow(/secret|admin_token/);
    });
  }

  test("a config without its secret is refused, not run unauthenticated", () => {
    const text = renderConfig(scaleSchema, generatedValues(scaleSchema)).replace(/^secret = .*$/m, "");
    const err = errorOf(() => parseConfig(scaleSchema, text, "scale.toml"));
    expect(err.message).toContain('cluster.secret: missing key "secret"');
  });

  test("two generated scale configs have different secrets", () => {
    const a = generatedValues(scaleSchema) as any;
    const b = generatedValues(scaleSchema) as any;
    expect(a.cluster.secret).not.toBe(b.cluster.secret);
  });
});

describe("config files", () => {
  test("loadConfig reports a missing file with the init command to create it", () => {
    const err = errorOf(() => loadConfig(scaleSchema, "/nonexistent/scale.toml"));
    expect(err.message).toContain("file not found");
    expect(err.hint).toContain("wolf scale init --config /nonexistent/scale.toml");
  });

  test("writeConfigFile is 0600, refuses to overwrite without force", () => {
    const dir = mkdtempSync(join(tmpdir(), "wolf-config-"));
    try {
      const file = join(dir, "sub", "x.toml");
      writeConfigFile(file, "a = 1\n");
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(() => writeConfigFile(file, "a = 2\n")).toThrow(/already exists/);
      expect(readFileSync(file, "utf8")).toBe("a = 1\n");
      writeConfigFile(file, "a = 2\n", { force: true });
      expect(readFileSync(file, "utf8")).toBe("a = 2\n");
      writeFileSync(join(dir, "ok.toml"), renderConfig(netSchema));
      expect(loadConfig(netSchema, join(dir, "ok.toml")).interface.listen_port).toBe(9600);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
