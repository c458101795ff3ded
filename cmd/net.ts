/** `wolf net`: encrypted mesh VPN over TUN. Wiring only; the logic is in lib/net/. */
import { defineCommand } from "citty";
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { defaultConfigPath, loadConfig, parseConfig, renderConfig } from "../lib/common/config/index.ts";
import {
  configArgs,
  configPath,
  dataDirArg,
  initCommand,
  loadFromArgs,
  validateCommand,
} from "../lib/common/config-commands.ts";
import { UsageError, WolfError } from "../lib/common/errors.ts";
import { parseIPv4 } from "../lib/net/device/allowedips.ts";
import { isEndpoint, type NetConfig, netSchema, writeNetConfig } from "../lib/net/config.ts";
import { controlRequest } from "../lib/net/control.ts";
import { runNetDaemon } from "../lib/net/daemon.ts";
import { decodeToken } from "../lib/net/invite.ts";
import { joinMesh } from "../lib/net/join.ts";
import {
  decodeKey,
  encodeKey,
  keyPairFromPrivate,
  loadKeyFile,
  newKeyPair,
  writeKeyFile,
} from "../lib/net/device/keys.ts";

const common = { ...configArgs("net"), ...dataDirArg };

/** Paths next to a non-default config file, so several nodes can live on one machine. */
function pathsNextTo(file: string): Record<string, unknown> {
  if (file === defaultConfigPath("net")) return {};
  const dir = dirname(file);
  return {
    node: { data_dir: join(dir, "data") },
    interface: { key_file: join(dir, "net.key"), control_socket: join(dir, "net.sock") },
  };
}

function subnetFor(address: string, subnet?: string): string {
  if (subnet) return subnet;
  const ip = parseIPv4(address);
  if (ip === undefined) return "10.0.10.0/24";
  return `${address.split(".").slice(0, 3).join(".")}.0/24`;
}

/** Creates the key file unless one exists (kept: peers know this node by it) or --force. */
function ensureKey(keyFile: string, force: boolean): "created" | "kept" {
  if (existsSync(keyFile) && !force) {
    loadKeyFile(keyFile);
    return "kept";
  }
  writeKeyFile(keyFile, newKeyPair(), { force });
  return "created";
}

/** Seconds in "90s", "30m", "24h", "7d" (or plain seconds); zero is refused. */
function parseDuration(text: string, flag: string): number {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(text.trim());
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(m?.[2] ?? "s") as "s"];
  const seconds = m ? Number(m[1]) * unit : 0;
  if (!m || seconds <= 0 || !Number.isSafeInteger(seconds))
    throw new UsageError(`${flag} takes a duration, got ${JSON.stringify(text)}`, "use e.g. 90s, 30m, 24h, 7d");
  return seconds;
}

/** All of stdin, refusing more than `limit` bytes (a key is 45; `< /dev/zero` must not eat memory). */
async function readStdin(limit: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of Bun.stdin.stream()) {
    size += chunk.length;
    if (size > limit)
      throw new UsageError(
        `more than ${limit} bytes on stdin; expected one base64 private key`,
        "e.g. wolf net genkey | wolf net pubkey",
      );
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

const init = initCommand(netSchema, {
  args: {
    address: { type: "string", description: "This node's overlay address", valueHint: "IP" },
    subnet: { type: "string", description: "Overlay network (default: the address's /24)", valueHint: "CIDR" },
  },
  overrides: (args) => {
    const file = configPath("net", args);
    const out = pathsNextTo(file) as { interface?: Record<string, unknown> };
    if (args.address || args.subnet) {
      out.interface = { ...out.interface };
      if (args.address) out.interface.address = args.address;
      out.interface.subnet = subnetFor(String(args.address ?? "10.0.10.1"), args.subnet as string | undefined);
    }
    return out;
  },
  after: (_file, config, args) => {
    const result = ensureKey(config.interface.key_file, Boolean(args.force));
    process.stdout.write(
      `${result === "created" ? "wrote" : "kept existing"} private key ${config.interface.key_file}\n`,
    );
  },
});

const genkey = defineCommand({
  meta: { name: "genkey", description: "Print a new private key (base64)" },
  run() {
    process.stdout.write(`${encodeKey(newKeyPair().privateKey)}\n`);
  },
});

const pubkey = defineCommand({
  meta: {
    name: "pubkey",
    description: "Print the public key of a private key read from stdin (or of this node's key file)",
  },
  args: { ...configArgs("net") },
  async run({ args }) {
    const input = process.stdin.isTTY ? "" : (await readStdin(4096)).trim();
    if (input) {
      let key: Uint8Array;
      try {
        key = decodeKey(input, "the private key on stdin");
      } catch (err) {
        throw new UsageError(
          (err as Error).message,
          "pipe in a key, e.g. wolf net genkey | wolf net pubkey (or run it without stdin to read this node's key file)",
        );
      }
      process.stdout.write(`${encodeKey(keyPairFromPrivate(key).publicKey)}\n`);
      return;
    }
    const { config } = loadFromArgs(netSchema, args);
    process.stdout.write(`${encodeKey(loadKeyFile(config.interface.key_file).publicKey)}\n`);
  },
});

const token = defineCommand({
  meta: {
    name: "token",
    description: "Print this node as a [[peers]] entry other nodes can paste into their net.toml",
  },
  args: { ...common },
  run({ args }) {
    const { config } = loadFromArgs(netSchema, args);
    const key = loadKeyFile(config.interface.key_file);
    const endpoint = config.interface.endpoint || `${hostname()}:${config.interface.listen_port}`;
    process.stdout.write(
      `[[peers]]\nname = ${JSON.stringify(hostname())}\npublic_key = "${encodeKey(key.publicKey)}"\nendpoint = ${JSON.stringify(endpoint)}\nallowed_ip = "${config.interface.address}"\n`,
    );
  },
});

const invite = defineCommand({
  meta: { name: "invite", description: "Print a one-time invite line for a new node (asks the running daemon)" },
  args: {
    ...common,
    ttl: {
      type: "string",
      description: "How long the invite is valid (e.g. 30m, 24h)",
      default: "24h",
      valueHint: "DURATION",
    },
    address: {
      type: "string",
      description: "Overlay address to give the joiner (default: the lowest free one)",
      valueHint: "IP",
    },
    endpoint: {
      type: "string",
      description: "host:port the joiner reaches this node at (default: interface.endpoint or this host's IP)",
      valueHint: "HOST:PORT",
    },
  },
  async run({ args }) {
    const body = { ttl_s: parseDuration(String(args.ttl), "--ttl"), address: args.address, endpoint: args.endpoint };
    if (args.address !== undefined && parseIPv4(String(args.address)) === undefined)
      throw new UsageError(`--address takes an IPv4 address, got ${JSON.stringify(args.address)}`);
    if (args.endpoint !== undefined && !isEndpoint(String(args.endpoint)))
      throw new UsageError(
        `--endpoint takes host:port, got ${JSON.stringify(args.endpoint)}`,
        "e.g. --endpoint 192.168.1.10:9600",
      );
    const { file, config } = loadFromArgs(netSchema, args);
    const r = await controlRequest<{ token: string; address: string; expires: string }>(
      config.interface.control_socket,
      "POST",
      "/invite",
      body,
      { configFile: file },
    );
    process.stderr.write(
      `invite for ${r.address}, valid until ${r.expires}, usable once. On the new node run:\n  wolf net join <line>\n`,
    );
    process.stdout.write(`${r.token}\n`);
  },
});

const joinCmd = defineCommand({
  meta: {
    name: "join",
    description: "Join a mesh with an invite line: configures this node and registers it with the inviter",
  },
  args: {
    ...common,
    token: { type: "positional", description: "Invite line from `wolf net invite`", required: true },
    name: { type: "string", description: "This node's name as peers see it (default: hostname)", valueHint: "NAME" },
    timeout: {
      type: "string",
      description: "How long to try reaching the inviter",
      default: "15s",
      valueHint: "DURATION",
    },
  },
  async run({ args }) {
    // Check every argument before anything is written.
    const tokenData = decodeToken(String(args.token));
    const timeoutMs = parseDuration(String(args.timeout), "--timeout") * 1000;
    const file = configPath("net", args);
    let config: NetConfig;
    if (existsSync(file)) {
      config = loadConfig(netSchema, file);
    } else {
      const values = { ...pathsNextTo(file) } as {
        interface?: Record<string, unknown>;
        node?: Record<string, unknown>;
      };
      values.interface = { ...values.interface, address: tokenData.address, subnet: tokenData.subnet };
      config = parseConfig(netSchema, renderConfig(netSchema, values as never), file);
      writeNetConfig(file, config);
      process.stderr.write(`wrote ${file}\n`);
    }
    if (args["data-dir"]) config.node.data_dir = String(args["data-dir"]);
    if (ensureKey(config.interface.key_file, false) === "created")
      process.stderr.write(`wrote private key ${config.interface.key_file}\n`);
    const result = await joinMesh({
      file,
      config,
      token: tokenData,
      keys: loadKeyFile(config.interface.key_file),
      name: String(args.name ?? hostname()),
      timeoutMs,
    });
    process.stdout.write(
      `joined as ${result.address} with ${result.peers} peer(s); start the daemon with: wolf net up${args.config ? ` --config ${file}` : ""}\n`,
    );
  },
});

const up = defineCommand({
  meta: { name: "up", description: "Run the mesh daemon (creates the TUN interface)" },
  args: { ...common },
  async run({ args }) {
    const { file, config } = loadFromArgs(netSchema, args);
    const code = await runNetDaemon({ configFile: file, config });
    if (code !== 0) throw new WolfError("network", "wolf net stopped after a data-plane failure (see the log above)");
  },
});

export const netCommand = defineCommand({
  meta: { name: "net", description: "Encrypted mesh VPN over TUN with invite/join" },
  subCommands: {
    init,
    validate: validateCommand(netSchema),
    genkey,
    pubkey,
    token,
    invite,
    join: joinCmd,
    up,
  },
});
