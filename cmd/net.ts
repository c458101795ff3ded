/** `wolf net`: encrypted mesh VPN over TUN. Wiring only; the logic is in lib/net/. */
import { defineCommand } from "citty";
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { defaultConfigPath, loadConfig, parseConfig, renderConfig } from "../lib/common/config/index.ts";
import { configArgs, dataDirArg, initCommand, loadFromArgs, validateCommand } from "../lib/common/config-commands.ts";
import { UsageError, WolfError } from "../lib/common/errors.ts";
import { parseIPv4 } from "../lib/net/allowedips.ts";
import { type NetConfig, netSchema, writeNetConfig } from "../lib/net/config.ts";
import { controlRequest } from "../lib/net/control.ts";
import { runNetDaemon } from "../lib/net/daemon.ts";
import { decodeToken } from "../lib/net/invite.ts";
import { joinMesh } from "../lib/net/join.ts";
import { decodeKey, encodeKey, keyPairFromPrivate, loadKeyFile, newKeyPair, writeKeyFile } from "../lib/net/keys.ts";

const common = { ...configArgs("net"), ...dataDirArg };

/** Paths next to a non-default config file, so several nodes can live on one machine. */
function pathsNextTo(file: string): Record<string, unknown> {
  if (file === defaultConfigPath("net")) return {};
  const dir = dirname(file);
  return { node: { data_dir: join(dir, "data") }, interface: { key_file: join(dir, "net.key"), control_socket: join(dir, "net.sock") } };
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

function parseDuration(text: string): number {
  const m = /^(\d+)\s*(s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new UsageError(`not a duration: ${JSON.stringify(text)}`, "use e.g. 90s, 30m, 24h, 7d");
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(m[2] ?? "s") as "s"];
  return Number(m[1]) * unit;
}

const init = initCommand(netSchema, {
  args: {
    address: { type: "string", description: "This node's overlay address", valueHint: "IP" },
    subnet: { type: "string", description: "Overlay network (default: the address's /24)", valueHint: "CIDR" },
  },
  overrides: (args) => {
    const file = (args.config as string | undefined) || defaultConfigPath("net");
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
    process.stdout.write(`${result === "created" ? "wrote" : "kept existing"} private key ${config.interface.key_file}\n`);
  },
});

const genkey = defineCommand({
  meta: { name: "genkey", description: "Print a new private key (base64)" },
  run() {
    process.stdout.write(`${encodeKey(newKeyPair().privateKey)}\n`);
  },
});

const pubkey = defineCommand({
  meta: { name: "pubkey", description: "Print the public key of a private key read from stdin (or of this node's key file)" },
  args: { ...configArgs("net") },
  async run({ args }) {
    const input = process.stdin.isTTY ? "" : (await Bun.stdin.text()).trim();
    if (input) {
      process.stdout.write(`${encodeKey(keyPairFromPrivate(decodeKey(input, "private key on stdin")).publicKey)}\n`);
      return;
    }
    const { config } = loadFromArgs(netSchema, args);
    process.stdout.write(`${encodeKey(loadKeyFile(config.interface.key_file).publicKey)}\n`);
  },
});

const token = defineCommand({
  meta: { name: "token", description: "Print this node as a [[peers]] entry other nodes can paste into their net.toml" },
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
    ttl: { type: "string", description: "How long the invite is valid (e.g. 30m, 24h)", default: "24h", valueHint: "DURATION" },
    address: { type: "string", description: "Overlay address to give the joiner (default: the lowest free one)", valueHint: "IP" },
    endpoint: { type: "string", description: "host:port the joiner reaches this node at (default: interface.endpoint or this host's IP)", valueHint: "HOST:PORT" },
  },
  async run({ args }) {
    const { config } = loadFromArgs(netSchema, args);
    const body = { ttl_s: parseDuration(String(args.ttl)), address: args.address, endpoint: args.endpoint };
    const r = await controlRequest<{ token: string; address: string; expires: string }>(config.interface.control_socket, "POST", "/invite", body);
    process.stderr.write(`invite for ${r.address}, valid until ${r.expires}, usable once. On the new node run:\n  wolf net join <line>\n`);
    process.stdout.write(`${r.token}\n`);
  },
});

const joinCmd = defineCommand({
  meta: { name: "join", description: "Join a mesh with an invite line: configures this node and registers it with the inviter" },
  args: {
    ...common,
    token: { type: "positional", description: "Invite line from `wolf net invite`", required: true },
    name: { type: "string", description: "This node's name as peers see it (default: hostname)", valueHint: "NAME" },
    timeout: { type: "string", description: "How long to try reaching the inviter", default: "15s", valueHint: "DURATION" },
  },
  async run({ args }) {
    const tokenData = decodeToken(String(args.token));
    const file = (args.config as string | undefined) || defaultConfigPath("net");
    let config: NetConfig;
    if (existsSync(file)) {
      config = loadConfig(netSchema, file);
    } else {
      const values = { ...pathsNextTo(file) } as { interface?: Record<string, unknown>; node?: Record<string, unknown> };
      values.interface = { ...values.interface, address: tokenData.address, subnet: tokenData.subnet };
      config = parseConfig(netSchema, renderConfig(netSchema, values as never), file);
      writeNetConfig(file, config);
      process.stderr.write(`wrote ${file}\n`);
    }
    if (args["data-dir"]) config.node.data_dir = String(args["data-dir"]);
    if (ensureKey(config.interface.key_file, false) === "created") process.stderr.write(`wrote private key ${config.interface.key_file}\n`);
    const result = await joinMesh({
      file,
      config,
      token: tokenData,
      keys: loadKeyFile(config.interface.key_file),
      name: String(args.name ?? hostname()),
      timeoutMs: parseDuration(String(args.timeout)) * 1000,
    });
    process.stdout.write(`joined as ${result.address} with ${result.peers} peer(s); start the daemon with: wolf net up${args.config ? ` --config ${file}` : ""}\n`);
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
