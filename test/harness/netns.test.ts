import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { waitUntil } from "../../lib/common/wait.ts";
import { type Host, TestNet, hasNetnsSupport, namespacePids, netnsSkipReason, sweepStaleNamespaces } from "./netns.ts";
import { ChildScript, pidAlive, signalPid } from "./procs.ts";

const BUN = process.execPath;
const skip = !hasNetnsSupport();
if (skip) console.warn(`[skip] netns harness tests: ${netnsSkipReason()}`);

function namespaces(): string[] {
  const r = Bun.spawnSync(["ip", "netns", "list"], { stdout: "pipe" });
  return r.stdout
    .toString()
    .split("\n")
    .map((line) => line.split(" ")[0]!)
    .filter(Boolean);
}

/** A TCP server in `host` that prints each client's address: shows where connections come from. */
function startPeerEchoServer(host: Host, port: number) {
  const code = `Bun.listen({ hostname: "0.0.0.0", port: ${port}, socket: {
    open(s) { console.log("peer " + s.remoteAddress); s.end(); }, data() {} } }); console.log("listening");`;
  return host.spawn([BUN, "-e", code], { stdout: "pipe", stderr: "pipe" });
}

async function tcpConnects(from: Host, ip: string, port: number): Promise<boolean> {
  const code = `const t = setTimeout(() => process.exit(3), 1500);
    Bun.connect({ hostname: "${ip}", port: ${port}, socket: { open(s) { s.end(); clearTimeout(t); process.exit(0); },
      data() {}, connectError() { process.exit(2); } } });`;
  const r = await from.exec([BUN, "-e", code], { timeoutMs: 10_000 });
  return r.code === 0;
}

describe.skipIf(skip)("TestNet", () => {
  let net: TestNet;
  let a: Host, b: Host, c: Host, natted: Host;

  beforeAll(async () => {
    net = await TestNet.create();
    [a, b, c, natted] = await Promise.all([
      net.addHost("a"),
      net.addHost("b"),
      net.addHost("c"),
      net.addHost("home", { behindNat: true }),
    ]);
  });
  afterAll(() => net?.destroy());

  test("names are prefixed with the creator pid and fit the limits", () => {
    for (const ns of [net.lanNs, a.ns, natted.ns, natted.nat!.routerNs]) {
      expect(ns.startsWith(`wt${process.pid}-`)).toBe(true);
      expect(namespaces()).toContain(ns);
    }
    expect(a.ip).toMatch(new RegExp(`^10\\.77\\.${net.octet}\\.\\d+$`));
    expect(natted.ip.startsWith("10.77.")).toBe(false);
    expect(natted.nat!.publicIp.startsWith(`10.77.${net.octet}.`)).toBe(true);
  });

  test("nothing is added to the root namespace", () => {
    const root = Bun.spawnSync(["ip", "-o", "link"], { stdout: "pipe" }).stdout.toString();
    expect(root).not.toContain("br0");
    expect(root).not.toMatch(/\bp\d+@/);
  });

  test("loopback is up in every namespace", async () => {
    const results = await Promise.all([a, b, c, natted].map((h) => h.canPing("127.0.0.1")));
    expect(results).toEqual([true, true, true, true]);
  });

  test("three LAN hosts ping each other (all pairs)", async () => {
    const hosts = [a, b, c];
    const pairs = hosts.flatMap((from) => hosts.filter((to) => to !== from).map((to) => [from, to] as const));
    const results = await Promise.all(pairs.map(([from, to]) => from.canPing(to.ip, 2)));
    expect(results).toEqual(pairs.map(() => true));
  });

  test("a host behind NAT reaches the LAN, appearing from the router's address", async () => {
    expect(await natted.canPing(a.ip, 2)).toBe(true);
    const server = startPeerEchoServer(a, 7001);
    let out = "";
    const reader = (async () => {
      for await (const chunk of server.stdout) out += new TextDecoder().decode(chunk);
    })();
    await waitUntil(() => out.includes("listening"), { timeoutMs: 5000, what: "the echo server" });
    expect(await tcpConnects(natted, a.ip, 7001)).toBe(true);
    await waitUntil(() => out.includes("peer "), { timeoutMs: 5000, what: "the server to see the client" });
    expect(out).toContain(`peer ${natted.nat!.publicIp}`);
    expect(out).not.toContain(natted.ip);
    signalPid(server.pid, "SIGTERM");
    await server.exited;
    await reader;
  });

  test("the LAN cannot initiate to a host behind NAT, even with a route to its private net", async () => {
    expect(await a.canPing(natted.ip)).toBe(false);
    // Give the LAN host a route through the router: the router's forward policy still drops it.
    const route = await b.exec(["ip", "route", "add", natted.ip, "via", natted.nat!.publicIp]);
    expect(route.code).toBe(0);
    expect(await b.canPing(natted.ip)).toBe(false);
    expect(await b.canPing(natted.nat!.publicIp)).toBe(true);
  });

  test("disconnect unplugs a host from the LAN; reconnect plugs it back", async () => {
    await net.disconnect(c);
    expect(await a.canPing(c.ip)).toBe(false);
    await net.reconnect(c);
    await waitUntil(() => a.canPing(c.ip), { timeoutMs: 5000, what: "c to be reachable again" });
  });

  test("exec reports exit codes and output, and enforces its deadline", async () => {
    const r = await a.exec(["sh", "-c", "echo out; echo err >&2; exit 7"]);
    expect(r).toEqual({ code: 7, stdout: "out\n", stderr: "err\n" });
    const t0 = Date.now();
    await expect(a.exec(["sleep", "30"], { timeoutMs: 300 })).rejects.toThrow(/timed out after 300 ms/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  test("addHost rejects bad and duplicate names", async () => {
    await expect(net.addHost("Bad Name")).rejects.toThrow(/host name must match/);
    await expect(net.addHost("a")).rejects.toThrow(/exists already/);
  });
});

describe.skipIf(skip)("TestNet.destroy", () => {
  test("kills tracked and untracked processes in its namespaces, deletes them all, and is idempotent", async () => {
    const net = await TestNet.create();
    try {
      const [h1, h2] = await Promise.all([net.addHost("x"), net.addHost("y", { behindNat: true })]);
      // A process that ignores SIGTERM (forces the SIGKILL path) and an untracked one (started by exec, detached).
      const stubborn = h1.spawn(["sh", "-c", "trap '' TERM; while :; do sleep 1; done"]);
      await h2.exec(["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 &"]);
      const ours = namespaces().filter((n) => n.startsWith(`wt${process.pid}-${net.octet}`));
      expect(ours.length).toBe(4); // lan, x, y's router, y
      const untracked = namespacePids([h2.ns]).get(h2.ns) ?? [];
      expect(untracked.length).toBe(1);

      const t0 = Date.now();
      await net.destroy(500);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(pidAlive(stubborn.pid)).toBe(false);
      expect(pidAlive(untracked[0]!)).toBe(false);
      const left = namespaces();
      for (const ns of ours) expect(left).not.toContain(ns);
      await net.destroy(); // idempotent
      await expect(net.addHost("z")).rejects.toThrow(/destroyed/);
    } finally {
      await net.destroy();
    }
  });

  test("concurrent TestNets get different subnets", async () => {
    const nets = await Promise.all([TestNet.create(), TestNet.create(), TestNet.create()]);
    try {
      expect(new Set(nets.map((n) => n.subnet)).size).toBe(3);
    } finally {
      await Promise.all(nets.map((n) => n.destroy()));
    }
  });
});

describe.skipIf(skip)("sweepStaleNamespaces", () => {
  test("removes the namespaces and processes of a test process killed with SIGKILL", async () => {
    const harness = join(import.meta.dir, "netns.ts");
    const script = `
      import { TestNet } from ${JSON.stringify(harness)};
      setTimeout(() => process.exit(9), 60_000); // bounded even if the parent forgets us
      const net = await TestNet.create();
      const h = await net.addHost("victim");
      await net.addHost("natted", { behindNat: true });
      h.spawn(["sleep", "300"]); // tracked: dies with us (pdeathsig)
      await h.exec(["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 &"]); // orphan: only a sweep kills it
      console.log(JSON.stringify({ prefix: "wt" + process.pid + "-", ns: h.ns }));
    `;
    const child = new ChildScript(script);
    try {
      const { prefix, ns } = await child.report<{ prefix: string; ns: string }>({
        timeoutMs: 15_000,
        what: "the child to set up its TestNet",
      });
      const leftovers = namespaces().filter((n) => n.startsWith(prefix));
      expect(leftovers.length).toBe(4);
      const orphans = () => (namespacePids([ns]).get(ns) ?? []).filter((pid) => pidAlive(pid));

      child.kill("SIGKILL");
      await child.exited();
      expect(namespaces().filter((n) => n.startsWith(prefix)).length).toBe(4); // SIGKILL: no cleanup ran
      const orphan = await waitUntil(() => (orphans().length === 1 ? orphans()[0] : undefined), {
        timeoutMs: 5000,
        what: "only the orphan to remain in the namespace",
      });

      const t0 = performance.now();
      sweepStaleNamespaces(); // (a concurrent test run's preload may sweep some of them first)
      const ms = performance.now() - t0;
      expect(namespaces().filter((n) => n.startsWith(prefix))).toEqual([]);
      expect(pidAlive(orphan)).toBe(false);
      expect(ms).toBeLessThan(5000);

      // Nothing stale now: the sweep is a cheap no-op that leaves live namespaces alone.
      const mine = await TestNet.create();
      try {
        const t1 = performance.now();
        expect(sweepStaleNamespaces()).toEqual([]);
        expect(performance.now() - t1).toBeLessThan(50);
        expect(namespaces()).toContain(mine.lanNs);
      } finally {
        await mine.destroy();
      }
    } finally {
      await child.close();
    }
  });

  test("does not throw when namespaces or `ip` are unavailable", () => {
    const saved = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      expect(() => sweepStaleNamespaces()).not.toThrow();
    } finally {
      process.env.PATH = saved;
    }
  });
});
