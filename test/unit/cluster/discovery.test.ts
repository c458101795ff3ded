/** Discovery beacons on loopback (unicast targets; broadcast is exercised in the integration test). */
import { afterEach, expect, test } from "bun:test";
import { Discovery } from "../../../lib/cluster/discovery.ts";
import { waitUntil } from "../../../lib/common/wait.ts";
import { freeUdpPort } from "../../harness/ports.ts";

const SECRET = "c".repeat(64);
const started: Discovery[] = [];
afterEach(() => {
  for (const d of started.splice(0)) d.stop();
});

async function node(id: number, port: number, targets: number[], opts: { secret?: string; cluster?: string } = {}) {
  const found = new Map<number, string>();
  const d = new Discovery({
    id,
    clusterName: opts.cluster ?? "disc",
    secret: opts.secret ?? SECRET,
    port,
    bindHost: "127.0.0.1",
    advertiseAddr: `127.0.0.1:${7000 + id}`,
    intervalMs: 50,
    broadcast: false,
    targets: targets.map((p) => `127.0.0.1:${p}`),
    onPeer: (pid, addr) => found.set(pid, addr),
  });
  started.push(d);
  await d.start();
  return { d, found };
}

test("nodes of one cluster find each other; another cluster and a node without the secret are ignored and counted", async () => {
  const [p1, p2, p3, p4] = [await freeUdpPort(), await freeUdpPort(), await freeUdpPort(), await freeUdpPort()];
  const everyone = [p1, p2, p3, p4];
  const a = await node(1, p1, everyone);
  const b = await node(2, p2, everyone);
  const stranger = await node(3, p3, everyone, { secret: "d".repeat(64) });
  const otherCluster = await node(4, p4, everyone, { cluster: "other" });
  await waitUntil(() => a.found.has(2) && b.found.has(1), { timeoutMs: 3000, what: "mutual discovery" });
  await waitUntil(() => a.d.counters().forged! > 0 && a.d.counters().other_cluster! > 0, {
    timeoutMs: 3000,
    what: "rejections counted",
  });
  expect(a.found.get(2)).toBe("127.0.0.1:7002");
  expect([...a.found.keys()]).toEqual([2]);
  expect([...b.found.keys()]).toEqual([1]);
  expect(stranger.found.size).toBe(0); // it cannot verify us either
  expect(otherCluster.found.size).toBe(0);
});

test("a replayed beacon is dropped; a tampered one is counted as forged", async () => {
  const port = await freeUdpPort();
  const a = await node(1, port, []);
  const other = new Discovery({
    id: 2,
    clusterName: "disc",
    secret: SECRET,
    port: 1,
    advertiseAddr: "127.0.0.1:7002",
    broadcast: false,
    onPeer: () => {},
  });
  const first = other.beacon();
  a.d.onPacket(first);
  expect(a.found.get(2)).toBe("127.0.0.1:7002");
  a.d.onPacket(first);
  expect(a.d.counters().replayed).toBe(1);
  const tampered = Buffer.from(other.beacon().toString("latin1").replace("127.0.0.1:7002", "127.0.0.1:6666"), "latin1");
  a.d.onPacket(tampered);
  expect(a.d.counters().forged).toBe(1);
  expect(a.found.get(2)).toBe("127.0.0.1:7002");
  a.d.onPacket(Buffer.from("not a beacon at all, just noise........"));
  expect(a.d.counters().malformed).toBe(1);
});
