/**
 * wolf net end to end, from dist/wolf in network namespaces on one LAN bridge:
 * three nodes mesh and ping; `wolf ctl net` reports peers; a fourth node joins by invite and
 * reaches everyone; a used or expired invite is refused; a killed node comes back with fresh keys;
 * and a rogue host on the LAN (plus a wiretap on a victim) tries the attacks from issue 4.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Host,
  REPO_ROOT,
  TestNet,
  type WolfProcess,
  ensureBuilt,
  netnsSkipReason,
  runWolf,
  runWolfOnce,
} from "../harness/index.ts";
import { waitUntil } from "../../lib/common/wait.ts";

const skip = netnsSkipReason();
const BUN = process.execPath;
const ROGUE = join(REPO_ROOT, "test", "integration", "net-rogue.ts");

interface Node {
  name: string;
  host: Host;
  dir: string;
  config: string;
  overlay: string;
  pubkey: string;
  proc?: WolfProcess;
}

let net: TestNet;
let dir: string;
const nodes: Node[] = [];
let rogue: Host;

async function wolf(args: string[], node?: Node, timeoutMs = 20_000) {
  const r = await runWolfOnce(args, { netns: node?.host.ns, env: { NO_COLOR: "1" }, timeoutMs });
  if (r.code !== 0) throw new Error(`wolf ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

async function startNode(node: Node): Promise<void> {
  node.proc = runWolf(["net", "up", "--config", node.config], { netns: node.host.ns, env: { NO_COLOR: "1" } });
  await node.proc.waitForOutput(/wolf net up: /, 15_000);
}

async function peersOf(node: Node): Promise<PeerJson[]> {
  return JSON.parse(await wolf(["ctl", "net", "peers", "--json", "--config", node.config]));
}
async function statusOf(
  node: Node,
): Promise<{ drops: Record<string, number>; rejected_handshakes: Record<string, number> }> {
  return JSON.parse(await wolf(["ctl", "net", "status", "--json", "--config", node.config]));
}

interface PeerJson {
  name: string;
  public_key: string;
  allowed_ip: string;
  endpoint: string | null;
  last_handshake: string | null;
  handshakes: number;
  rx_bytes: number;
  tx_bytes: number;
  session: { local_index: number; tx_counter: number } | null;
}

/** Pings until one reply (the first packet may wait for a handshake), bounded. */
async function reach(from: Node, to: Node, timeoutMs = 15_000): Promise<void> {
  await waitUntil(() => from.host.canPing(to.overlay, 1), {
    timeoutMs,
    intervalMs: 10,
    what: `${from.name} → ${to.name} (${to.overlay}) over the overlay`,
  });
}

function rogueTool(host: Host, args: string[]): WolfProcess {
  return runWolf(args, { netns: host.ns, command: [BUN, ROGUE] });
}

async function rogueOnce(host: Host, args: string[]): Promise<{ sent: number; replies: number }> {
  const p = rogueTool(host, args);
  const code = await p.waitForExit(15_000);
  if (code !== 0) throw new Error(`rogue ${args[0]} failed: ${p.output()}`);
  return JSON.parse(p.stdout().trim().split("\n").pop()!);
}

describe.skipIf(Boolean(skip))("wolf net in namespaces", () => {
  beforeAll(async () => {
    await ensureBuilt();
    net = await TestNet.create();
    dir = mkdtempSync(join(tmpdir(), "wolf-net-it-"));
    for (let i = 1; i <= 4; i++) {
      const host = await net.addHost(`n${i}`);
      const nodeDir = join(dir, `n${i}`);
      nodes.push({
        name: `n${i}`,
        host,
        dir: nodeDir,
        config: join(nodeDir, "net.toml"),
        overlay: `10.0.10.${i}`,
        pubkey: "",
      });
    }
    rogue = await net.addHost("rogue");
    // Nodes 1-3 are configured by hand (init + [[peers]]); node 4 will join by invite.
    for (const n of nodes.slice(0, 3)) {
      await wolf(["net", "init", "--config", n.config, "--address", n.overlay]);
      n.pubkey = (await wolf(["net", "pubkey", "--config", n.config])).trim();
    }
    for (const n of nodes.slice(0, 3)) {
      for (const p of nodes.slice(0, 3)) {
        if (p === n) continue;
        appendFileSync(
          n.config,
          `\n[[peers]]\nname = "${p.name}"\npublic_key = "${p.pubkey}"\nendpoint = "${p.host.ip}:9600"\nallowed_ip = "${p.overlay}"\n`,
        );
      }
    }
    await Promise.all(nodes.slice(0, 3).map(startNode));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.proc?.stop(3000)));
    await net?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("init wrote a 0600 key and refuses to overwrite it without --force", async () => {
    const n = nodes[0]!;
    const again = await runWolfOnce(["net", "init", "--config", n.config], { env: { NO_COLOR: "1" } });
    expect(again.code).toBe(4);
    expect(again.stderr).toContain("already exists");
    const keyFile = join(n.dir, "net.key");
    const { statSync } = await import("node:fs");
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  });

  test("all pairs of the three nodes ping each other over the overlay", async () => {
    const [a, b, c] = nodes as [Node, Node, Node];
    for (const [x, y] of [
      [a, b],
      [a, c],
      [b, a],
      [b, c],
      [c, a],
      [c, b],
    ] as const)
      await reach(x, y);
  }, 60_000);

  test("`wolf ctl net peers` shows each peer with endpoint, last handshake and rx/tx", async () => {
    const peers = await peersOf(nodes[0]!);
    expect(peers.map((p) => p.allowed_ip).sort()).toEqual(["10.0.10.2", "10.0.10.3"]);
    for (const p of peers) {
      const node = nodes.find((n) => n.overlay === p.allowed_ip)!;
      expect(p.endpoint).toBe(`${node.host.ip}:9600`);
      expect(p.last_handshake).not.toBeNull();
      expect(p.rx_bytes).toBeGreaterThan(0);
      expect(p.tx_bytes).toBeGreaterThan(0);
    }
    const table = await wolf(["ctl", "net", "peers", "--config", nodes[0]!.config]);
    expect(table).toMatch(/NAME\s+OVERLAY IP\s+ENDPOINT\s+LAST HANDSHAKE\s+RX\s+TX/);
    expect(table).toContain(`${nodes[1]!.host.ip}:9600`);
  });

  test("a fourth node joins with invite/join and pings everyone; the invite is single-use", async () => {
    const [a, b, c, d] = nodes as [Node, Node, Node, Node];
    const line = (await wolf(["net", "invite", "--config", a.config], a)).trim();
    expect(line).toMatch(/^wolfnet1:[A-Za-z0-9_-]+$/);
    const joined = await wolf(["net", "join", line, "--config", d.config, "--name", "n4"], d);
    expect(joined).toContain("joined as 10.0.10.4");
    d.pubkey = (await wolf(["net", "pubkey", "--config", d.config])).trim();
    // The inviter persisted the new peer; the others learned it over the mesh and persisted it too.
    expect(readFileSync(a.config, "utf8")).toContain(d.pubkey);
    await waitUntil(
      () => readFileSync(b.config, "utf8").includes(d.pubkey) && readFileSync(c.config, "utf8").includes(d.pubkey),
      {
        timeoutMs: 15_000,
        what: "n2 and n3 to learn about n4",
      },
    );
    await startNode(d);
    for (const other of [a, b, c]) {
      await reach(d, other);
      await reach(other, d);
    }
    // Someone else presenting the same invite is refused.
    const reuseDir = join(dir, "reuse");
    const reuse = await runWolfOnce(["net", "join", line, "--config", join(reuseDir, "net.toml"), "--timeout", "5s"], {
      netns: rogue.ns,
      env: { NO_COLOR: "1" },
    });
    expect(reuse.code).toBe(8);
    expect(reuse.stderr).toContain("already used");
  }, 90_000);

  test("an expired invite is refused", async () => {
    const a = nodes[0]!;
    const line = (await wolf(["net", "invite", "--config", a.config, "--ttl", "1s"], a)).trim();
    const expiresAt = Date.now() + 1100;
    await waitUntil(() => Date.now() > expiresAt, { timeoutMs: 5000, what: "the invite to expire" });
    const late = await runWolfOnce(
      ["net", "join", line, "--config", join(dir, "late", "net.toml"), "--timeout", "5s"],
      { netns: rogue.ns, env: { NO_COLOR: "1" } },
    );
    expect(late.code).toBe(8);
    expect(late.stderr).toContain("expired");
  }, 30_000);

  test("attacks from a rogue host: unknown key, replayed initiation, replayed, tampered and forged data", async () => {
    const [a, b] = nodes as [Node, Node];
    // 1. A handshake from a key b does not know (with a valid mac1: the attacker knows b's public key).
    const stranger = await rogueOnce(rogue, ["handshake", b.pubkey, `${b.host.ip}:9600`]);
    expect(stranger).toEqual({ sent: 1, replies: 0 });
    expect((await statusOf(b)).rejected_handshakes["unknown-peer"]).toBeGreaterThanOrEqual(1);

    // Wiretap on b while a restarts (a fresh initiation) and pings (data packets).
    const tap = rogueTool(b.host, ["capture", "9600", "400"]);
    await tap.waitForOutput(/"capturing":true/);
    await a.proc!.stop(3000);
    await startNode(a);
    await reach(a, b);
    await a.host.exec(["ping", "-c", "5", "-i", "0.05", "-q", b.overlay]);
    const fromA = `${a.host.ip}:9600`;
    await waitUntil(
      () =>
        tap
          .stdout()
          .split("\n")
          .filter((l) => l.includes(`"src":"${fromA}"`)).length >= 6,
      { timeoutMs: 10_000, what: "captured packets" },
    );
    tap.kill("SIGTERM");
    const captured = tap
      .stdout()
      .split("\n")
      .filter((l) => l.startsWith("{") && l.includes('"data"'))
      .map((l) => JSON.parse(l) as { src: string; dst: string; data: string })
      .filter((p) => p.src === fromA && p.dst === `${b.host.ip}:9600`);
    const initiation = captured.find((p) => Buffer.from(p.data, "base64")[0] === 1)!;
    const data = captured.filter(
      (p) => Buffer.from(p.data, "base64")[0] === 4 && Buffer.from(p.data, "base64").length > 32,
    );
    expect(initiation).toBeDefined();
    expect(data.length).toBeGreaterThanOrEqual(3);

    // 2. The captured initiation replayed: refused, no response.
    const before = await statusOf(b);
    const replayedInit = await rogueOnce(rogue, ["send", `${b.host.ip}:9600`, initiation.data]);
    expect(replayedInit.replies).toBe(0);
    // 3. Captured data packets replayed: dropped.
    await rogueOnce(rogue, ["send", `${b.host.ip}:9600`, ...data.slice(0, 3).map((p) => p.data)]);
    // 4. A tampered packet: dropped.
    const tampered = Buffer.from(data.at(-1)!.data, "base64");
    tampered[tampered.length - 20]! ^= 0x55;
    await rogueOnce(rogue, ["send", `${b.host.ip}:9600`, tampered.toString("base64")]);
    const after = await statusOf(b);
    expect(after.rejected_handshakes["replayed-initiation"] ?? 0).toBeGreaterThan(
      before.rejected_handshakes["replayed-initiation"] ?? 0,
    );
    expect(after.drops.replayed).toBeGreaterThanOrEqual(before.drops.replayed! + 3);
    expect(after.drops.auth_failed).toBeGreaterThanOrEqual(before.drops.auth_failed! + 1);

    // 5. None of this moved a's endpoint on b (the rogue sent from its own address), and the link works.
    const aOnB = (await peersOf(b)).find((p) => p.public_key === a.pubkey)!;
    expect(aOnB.endpoint).toBe(fromA);
    await reach(b, a);
  }, 90_000);

  test("a peer sending a spoofed inner source address is dropped", async () => {
    // n4 is a legitimate peer of n2; it sends packets claiming to come from n1's overlay address.
    const [a, b, , d] = nodes as [Node, Node, Node, Node];
    const before = (await statusOf(b)).drops.spoofed_source ?? 0;
    await d.host.exec(["ip", "addr", "add", `${a.overlay}/32`, "dev", "lo"]);
    const spoofed = await d.host.exec(["ping", "-c", "3", "-i", "0.1", "-W", "1", "-I", a.overlay, b.overlay]);
    expect(spoofed.code).not.toBe(0);
    expect((await statusOf(b)).drops.spoofed_source).toBeGreaterThanOrEqual(before + 3);
    await d.host.exec(["ip", "addr", "del", `${a.overlay}/32`, "dev", "lo"]);
    await reach(d, b);
  }, 30_000);

  test("a killed node restarts with fresh session keys (counters never restart under an old key)", async () => {
    const [a, , c] = nodes as [Node, Node, Node];
    await reach(c, a);
    const beforeOnC = (await peersOf(c)).find((p) => p.public_key === a.pubkey)!;
    expect(beforeOnC.session).not.toBeNull();
    a.proc!.kill("SIGKILL");
    await a.proc!.waitForExit(5000);
    await startNode(a);
    await reach(a, c);
    await reach(c, a);
    const afterOnC = (await peersOf(c)).find((p) => p.public_key === a.pubkey)!;
    // A new handshake happened and c now uses a different keypair (new index) for a.
    expect(afterOnC.handshakes).toBeGreaterThan(beforeOnC.handshakes);
    expect(afterOnC.session!.local_index).not.toBe(beforeOnC.session!.local_index);
    const aOnRestarted = (await peersOf(a)).find((p) => p.public_key === c.pubkey)!;
    expect(aOnRestarted.session!.tx_counter).toBeLessThan(100);
  }, 60_000);
});
