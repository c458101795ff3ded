/**
 * wolf net data-plane benchmark, side by side in one run:
 *   bare veth  |  wireguard-go (Debian, userspace)  |  wolf net (dist/wolf, or source with --source)
 * between two network namespaces joined by a veth pair: iperf3 TCP with 1 and 4 streams and ping
 * RTT over each overlay. Runs are interleaved (veth, wg, wolf, veth, wg, wolf, …) so machine noise
 * hits all three alike; medians are reported with ratios.
 *
 *   node_modules/.bin/bun test/bench/net/run.ts [--runs 3] [--seconds 5] [--source] [--only wolf,wg,veth]
 *
 * Needs root, iperf3, wireguard-go, iproute2. Cleans up its namespaces and processes (by PID), also
 * on failure and on Ctrl-C.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { encodeKey, newKeyPair } from "../../../lib/net/device/keys.ts";

const root = join(import.meta.dir, "..", "..", "..");
const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : def;
};
const RUNS = Number(opt("runs", "3"));
const SECONDS = Number(opt("seconds", "5"));
const FROM_SOURCE = args.includes("--source");
const ONLY = opt("only", "veth,wg,wolf").split(",");

const tag = `wb${process.pid % 100000}`;
const NS_A = `${tag}a`;
const NS_B = `${tag}b`;
const work = `/tmp/wolf-bench-${process.pid}`;
const children: Bun.Subprocess[] = [];

function sh(
  argv: string[],
  opts: { check?: boolean; stdin?: string } = {},
): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(argv, {
    stdin: opts.stdin ? new TextEncoder().encode(opts.stdin) : undefined,
    stdout: "pipe",
    stderr: "pipe",
  });
  const res = { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
  if (opts.check !== false && res.code !== 0)
    throw new Error(`${argv.join(" ")} failed (${res.code}): ${res.err.trim()}`);
  return res;
}
const inNs = (ns: string, argv: string[]) => ["ip", "netns", "exec", ns, ...argv];

function spawnIn(ns: string, argv: string[], env: Record<string, string> = {}, log?: string): Bun.Subprocess {
  const p = Bun.spawn(inNs(ns, argv), {
    env: { ...process.env, ...env },
    stdout: log ? Bun.file(log) : "ignore",
    stderr: log ? Bun.file(`${log}.err`) : "ignore",
  });
  children.push(p);
  return p;
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await Bun.sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function cleanup(): void {
  for (const p of children) {
    try {
      if (p.exitCode === null) p.kill("SIGKILL");
    } catch {
      // gone
    }
  }
  for (const ns of [NS_A, NS_B]) sh(["ip", "netns", "del", ns], { check: false });
  for (const name of ["wgb0a", "wgb0b"]) rmSync(`/var/run/wireguard/${name}.sock`, { force: true });
  rmSync(work, { recursive: true, force: true });
}
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});

function setupNamespaces(): void {
  sh(["ip", "netns", "add", NS_A]);
  sh(["ip", "netns", "add", NS_B]);
  sh(["ip", "link", "add", "bva", "netns", NS_A, "type", "veth", "peer", "name", "bvb", "netns", NS_B]);
  sh(["ip", "-n", NS_A, "addr", "add", "192.168.240.1/24", "dev", "bva"]);
  sh(["ip", "-n", NS_B, "addr", "add", "192.168.240.2/24", "dev", "bvb"]);
  for (const [ns, dev] of [
    [NS_A, "bva"],
    [NS_B, "bvb"],
  ] as const) {
    sh(["ip", "-n", ns, "link", "set", dev, "up"]);
    sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
  }
}

// ----- wireguard-go --------------------------------------------------------------------------------
const hex = (k: Uint8Array) => Buffer.from(k).toString("hex");

function uapiSet(ifname: string, body: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = connect(`/var/run/wireguard/${ifname}.sock`);
    let reply = "";
    sock.on("data", (d) => {
      reply += d.toString();
      if (reply.includes("\n\n")) {
        sock.end();
        if (/errno=0/.test(reply)) resolve();
        else reject(new Error(`UAPI ${ifname}: ${reply.trim()}`));
      }
    });
    sock.on("error", reject);
    sock.write(`set=1\n${body}\n`);
  });
}

async function startWireguard(): Promise<void> {
  const a = newKeyPair();
  const b = newKeyPair();
  const env = { WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: "1" };
  // Distinct interface names: the UAPI socket directory is shared by all namespaces. Foreground
  // (-f) so it stays our child and is stopped by PID.
  spawnIn(NS_A, ["wireguard-go", "-f", "wgb0a"], env);
  spawnIn(NS_B, ["wireguard-go", "-f", "wgb0b"], env);
  await waitFor(
    "wireguard-go UAPI sockets",
    () => existsSync("/var/run/wireguard/wgb0a.sock") && existsSync("/var/run/wireguard/wgb0b.sock"),
  );
  await uapiSet(
    "wgb0a",
    `private_key=${hex(a.privateKey)}\nlisten_port=51820\npublic_key=${hex(b.publicKey)}\nendpoint=192.168.240.2:51820\nallowed_ip=10.240.9.2/32\n`,
  );
  await uapiSet(
    "wgb0b",
    `private_key=${hex(b.privateKey)}\nlisten_port=51820\npublic_key=${hex(a.publicKey)}\nendpoint=192.168.240.1:51820\nallowed_ip=10.240.9.1/32\n`,
  );
  for (const [ns, dev, ip] of [
    [NS_A, "wgb0a", "10.240.9.1/24"],
    [NS_B, "wgb0b", "10.240.9.2/24"],
  ] as const) {
    sh(["ip", "-n", ns, "addr", "add", ip, "dev", dev]);
    sh(["ip", "-n", ns, "link", "set", dev, "mtu", "1420", "up"]);
  }
}

// ----- wolf net ---------------------------------------------------------------------------------------
function wolfCommand(): string[] {
  if (FROM_SOURCE) return [process.execPath, join(root, "cmd", "wolf.ts")];
  const bin = join(root, "dist", "wolf");
  if (!existsSync(bin))
    throw new Error("dist/wolf is missing: build it (node_modules/.bin/bun install/build.ts) or pass --source");
  return [bin];
}

async function startWolf(): Promise<void> {
  const a = newKeyPair();
  const b = newKeyPair();
  const nodes = [
    {
      ns: NS_A,
      dir: join(work, "a"),
      key: a,
      peer: b,
      address: "10.240.10.1",
      peerAddress: "10.240.10.2",
      peerUnderlay: "192.168.240.2",
    },
    {
      ns: NS_B,
      dir: join(work, "b"),
      key: b,
      peer: a,
      address: "10.240.10.2",
      peerAddress: "10.240.10.1",
      peerUnderlay: "192.168.240.1",
    },
  ];
  for (const n of nodes) {
    mkdirSync(n.dir, { recursive: true });
    writeFileSync(join(n.dir, "net.key"), `${encodeKey(n.key.privateKey)}\n`, { mode: 0o600 });
    writeFileSync(
      join(n.dir, "net.toml"),
      `[node]\ndata_dir = "${n.dir}/data"\n[interface]\nname = "wolfb0"\naddress = "${n.address}"\nsubnet = "10.240.10.0/24"\n` +
        `key_file = "${n.dir}/net.key"\ncontrol_socket = "${n.dir}/net.sock"\n` +
        `[[peers]]\nname = "peer"\npublic_key = "${encodeKey(n.peer.publicKey)}"\nendpoint = "${n.peerUnderlay}:9600"\nallowed_ip = "${n.peerAddress}"\n`,
    );
    spawnIn(
      n.ns,
      [...wolfCommand(), "net", "up", "--config", join(n.dir, "net.toml")],
      { NO_COLOR: "1" },
      join(n.dir, "log"),
    );
  }
  await waitFor(
    "wolf net session",
    () => sh(inNs(NS_A, ["ping", "-c", "1", "-W", "1", "10.240.10.2"]), { check: false }).code === 0,
    20_000,
  );
}

// ----- measurements -------------------------------------------------------------------------------------
async function iperf(serverIp: string, streams: number): Promise<number> {
  const server = spawnIn(NS_B, ["iperf3", "-s", "-1", "-B", serverIp]);
  await waitFor("iperf3 server", () =>
    sh(inNs(NS_B, ["ss", "-ltn", "sport = :5201"]), { check: false }).out.includes("5201"),
  );
  const r = sh(inNs(NS_A, ["iperf3", "-c", serverIp, "-t", String(SECONDS), "-P", String(streams), "-J"]), {
    check: false,
  });
  await server.exited;
  if (r.code !== 0) throw new Error(`iperf3 to ${serverIp} failed: ${r.err || r.out.slice(0, 300)}`);
  const j = JSON.parse(r.out);
  return j.end.sum_received.bits_per_second / 1e6;
}

function pingRtt(ip: string): number {
  const r = sh(inNs(NS_A, ["ping", "-c", "20", "-i", "0.05", "-q", ip]));
  const m = /= [\d.]+\/([\d.]+)\//.exec(r.out);
  if (!m) throw new Error(`cannot parse ping output: ${r.out}`);
  return Number(m[1]);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

async function main(): Promise<void> {
  const targets: { name: string; key: string; ip: string }[] = [
    { name: "bare veth", key: "veth", ip: "192.168.240.2" },
    { name: "wireguard-go", key: "wg", ip: "10.240.9.2" },
    { name: "wolf net", key: "wolf", ip: "10.240.10.2" },
  ].filter((t) => ONLY.includes(t.key));
  setupNamespaces();
  if (ONLY.includes("wg")) await startWireguard();
  if (ONLY.includes("wolf")) await startWolf();
  const results = new Map<string, { one: number[]; four: number[]; rtt: number[] }>();
  for (const t of targets) results.set(t.key, { one: [], four: [], rtt: [] });
  for (let run = 1; run <= RUNS; run++) {
    for (const t of targets) {
      const r = results.get(t.key)!;
      r.rtt.push(pingRtt(t.ip));
      r.one.push(await iperf(t.ip, 1));
      r.four.push(await iperf(t.ip, 4));
      console.error(
        `run ${run}/${RUNS} ${t.name.padEnd(13)} 1 stream ${r.one.at(-1)!.toFixed(0)} Mbit/s, 4 streams ${r.four.at(-1)!.toFixed(0)} Mbit/s, rtt ${r.rtt.at(-1)!.toFixed(3)} ms`,
      );
    }
  }
  const rows = targets.map((t) => {
    const r = results.get(t.key)!;
    return { name: t.name, key: t.key, one: median(r.one), four: median(r.four), rtt: median(r.rtt) };
  });
  console.log(`\nwolf net benchmark: medians of ${RUNS} runs, iperf3 ${SECONDS} s, 2 namespaces over a veth pair`);
  console.log(
    `${"".padEnd(14)}${"TCP 1 stream".padStart(16)}${"TCP 4 streams".padStart(16)}${"ping RTT".padStart(12)}`,
  );
  for (const r of rows)
    console.log(
      `${r.name.padEnd(14)}${`${r.one.toFixed(0)} Mbit/s`.padStart(16)}${`${r.four.toFixed(0)} Mbit/s`.padStart(16)}${`${r.rtt.toFixed(3)} ms`.padStart(12)}`,
    );
  const wolf = rows.find((r) => r.key === "wolf");
  for (const base of rows.filter((r) => r.key !== "wolf")) {
    if (!wolf) break;
    console.log(
      `wolf / ${base.name}: throughput ${(wolf.one / base.one).toFixed(2)}× (1 stream), ${(wolf.four / base.four).toFixed(2)}× (4 streams); RTT ${(wolf.rtt / base.rtt).toFixed(2)}×`,
    );
  }
}

try {
  await main();
} finally {
  cleanup();
}
