/** lib/scale/api/views.ts: /status, /cluster/nodes and /metrics from one NodeSnapshot (no daemon needed). */
import { expect, test } from "bun:test";
import type { NodeSnapshot } from "../../../lib/scale/api/views.ts";
import { metricsText, nodesView, statusView } from "../../../lib/scale/api/views.ts";

function snapshot(over: Partial<NodeSnapshot> = {}): NodeSnapshot {
  return {
    cluster: {
      id: 2,
      role: "follower",
      term: 7,
      state: "Active",
      leader: 1,
      lastLsn: 100,
      lastTerm: 7,
      commitLsn: 99,
      appliedLsn: 95,
      quorum: true,
      voters: [1, 2, 3],
      neverLeader: false,
      heldBack: [],
      handoverTo: null,
      preferredLeader: 3,
      failback: "auto",
      applyError: null,
      peers: [
        {
          id: 3,
          addr: "10.0.0.3:7000",
          state: "Active",
          role: "follower",
          voter: true,
          lsn: 98,
          lag: 2,
          lastSeenMsAgo: 40,
        },
        {
          id: 1,
          addr: "10.0.0.1:7000",
          state: "Active",
          role: "leader",
          voter: true,
          lsn: 100,
          lag: 0,
          lastSeenMsAgo: 10,
        },
      ],
      transport: {},
    },
    witness: false,
    held: [],
    leaderApi: "http://10.0.0.1:8080",
    api: "http://10.0.0.2:8080",
    address: "10.0.0.2:7000",
    diverged: null,
    writable: false,
    ack: "majority",
    mode: "api",
    database: { up: true, error: null, applyWaiting: null, version: "11.4.2-MariaDB", serverId: 2 },
    capture: null,
    apply: { applied: 95, ownSkipped: 0, retries: 3, lastApplyMs: 1, lazy: false },
    writes: { writes: 5, writeErrors: 1, forwarded: 4, ackTimeouts: 0, ackFallbacks: 0 },
    wal: {
      firstLsn: 1,
      lastLsn: 100,
      lastTerm: 7,
      segments: 1,
      bytes: 4096,
      appendedEntries: 100,
      batches: 9,
      fsyncs: 9,
      removedSegments: 0,
    },
    apis: new Map([
      [1, "http://10.0.0.1:8080"],
      [2, "http://10.0.0.2:8080"],
    ]),
    witnesses: new Set<number>(),
    uptimeMs: 1234,
    ...over,
  };
}

test("status: a diverged node reports NeedsMigration whatever the core says", () => {
  expect(statusView(snapshot()).state).toBe("Active");
  const s = statusView(snapshot({ diverged: "its MariaDB holds 1 transaction(s) the cluster lacks" }));
  expect(s.state).toBe("NeedsMigration");
  expect(s.diverged).toContain("transaction");
  expect(s.capture).toBeNull();
});

test("nodes: sorted by id, self marked, lag against the leader, API from the directory, db down shown", () => {
  const nodes = nodesView(snapshot({ database: { ...snapshot().database, up: false } }));
  expect(nodes.map((n) => [n.id, n.self, n.api, n.lag])).toEqual([
    [1, false, "http://10.0.0.1:8080", 0],
    [2, true, "http://10.0.0.2:8080", 5],
    [3, false, null, 2],
  ]);
  expect(nodes[1]!.state).toBe("Active (db down)");
  expect(nodes.map((n) => n.preferred)).toEqual([false, false, true]);
  expect(statusView(snapshot())).toMatchObject({ preferredLeader: 3, failback: "auto" });
});

test("metrics: counters and gauges from the snapshot", () => {
  const text = metricsText(snapshot());
  expect(text).toContain('wolf_scale_leader{node="2"} 0');
  expect(text).toContain('wolf_scale_forwarded_total{node="2"} 4');
  expect(text).toContain('wolf_scale_apply_retries_total{node="2"} 3');
  expect(text).toContain('wolf_scale_peer_lag_entries{node="2",peer="3"} 2');
  expect(text).toContain('wolf_scale_wal_bytes{node="2"} 4096');
  expect(text.endsWith("\n")).toBe(true);
});

test("witness: itself and peers that registered as witnesses are shown as such, no database is not 'db down'", () => {
  const self = nodesView(snapshot({ witness: true, database: { ...snapshot().database, up: false } }));
  expect(self.map((n) => [n.id, n.witness])).toEqual([
    [1, false],
    [2, true],
    [3, false],
  ]);
  expect(self[1]!.state).toBe("Active");
  expect(statusView(snapshot({ witness: true })).witness).toBe(true);
  expect(metricsText(snapshot({ witness: true }))).toContain('wolf_scale_witness{node="2"} 1');
  const peers = nodesView(snapshot({ witnesses: new Set([3]) }));
  expect(peers.find((n) => n.id === 3)!.witness).toBe(true);
  expect(peers.find((n) => n.id === 2)!.witness).toBe(false);
});
