/**
 * Votes and term fencing at the message level: a test endpoint speaks the protocol to one real node
 * on the simulated network, so each rule is checked directly rather than through the rare schedule
 * that needs it (pre-vote and the lowest-ID ranking make those schedules very rare).
 */
import { expect, test } from "bun:test";
import type { AppendReply, AppendRequest, Message, NodeId, VoteReply } from "../../../lib/cluster/types.ts";
import { SimCluster } from "./sim.ts";

const H = 100;

/** Node 3 alone: nodes 1 and 2 crashed before any election, so no lease or leader interferes. */
function lonelyNode3() {
  const sim = new SimCluster({ ids: [1, 2, 3], seed: 3, heartbeatMs: H, net: { minDelayMs: 1, maxDelayMs: 2 } });
  sim.crash(1);
  sim.crash(2);
  return sim;
}

/** Sends `msg` from endpoint `from` to node `to` and runs the simulation until the reply. */
function ask(sim: SimCluster, from: NodeId, to: NodeId, msg: Message): Message | undefined {
  let reply: Message | undefined;
  let done = false;
  sim.net.transport(from).request(to, msg, H, (r) => {
    reply = r;
    done = true;
  });
  sim.run(2 * H, () => done);
  return reply;
}

function vote(term: number, lastLsn: number, lastTerm: number) {
  return { type: "vote", term, lastLsn, lastTerm, pre: false, handover: false } as const;
}

test("a vote is durable before it is sent: after a restart the voter refuses a second candidate in that term", () => {
  const sim = lonelyNode3();
  const log = { lsn: sim.store(3).lastLsn(), term: sim.store(3).get(sim.store(3).lastLsn())!.term };
  const term = sim.node(3).currentTerm() + 1;
  expect(ask(sim, 1, 3, vote(term, log.lsn, log.term))).toMatchObject({
    type: "vote_reply",
    term,
    granted: true,
  } satisfies VoteReply);

  sim.restart(3);
  expect(sim.node(3).currentTerm()).toBe(term);
  expect(ask(sim, 2, 3, vote(term, log.lsn, log.term))).toMatchObject({ granted: false });
  expect(ask(sim, 1, 3, vote(term, log.lsn, log.term))).toMatchObject({ granted: true }); // the same candidate again: a lost reply is retried
  expect(ask(sim, 2, 3, vote(term + 1, log.lsn, log.term))).toMatchObject({ term: term + 1, granted: true }); // a new term, a new vote
});

test("a real vote (not only the pre-vote) is refused to a candidate whose log is behind", () => {
  const sim = lonelyNode3();
  const last = sim.store(3).lastLsn();
  const lastTerm = sim.store(3).get(last)!.term;
  const term = sim.node(3).currentTerm() + 1;
  expect(ask(sim, 1, 3, vote(term, last - 1, lastTerm))).toMatchObject({ granted: false }); // shorter
  expect(ask(sim, 1, 3, vote(term + 1, last + 5, lastTerm - 1))).toMatchObject({ granted: false }); // longer, older last term
  expect(ask(sim, 2, 3, vote(term + 2, last, lastTerm))).toMatchObject({ granted: true }); // as up to date
});

test("term fencing: an append or vote from a lower term is refused with the current term and changes nothing", () => {
  const sim = lonelyNode3();
  const term = sim.node(3).currentTerm() + 2;
  // A vote in a higher term moves node 3 to it (and it votes for node 1).
  const last = sim.store(3).lastLsn();
  expect(ask(sim, 1, 3, vote(term, last, sim.store(3).get(last)!.term))).toMatchObject({ granted: true });
  expect(sim.node(3).currentTerm()).toBe(term);

  // A deposed leader (node 2, one term behind) tries to overwrite and commit.
  const stale: AppendRequest = {
    type: "append",
    term: term - 1,
    prevLsn: last,
    prevTerm: sim.store(3).get(last)!.term,
    entries: [{ lsn: last + 1, term: term - 1, kind: "data", data: new Uint8Array([1]) }],
    commitLsn: last + 1,
    leaderLastLsn: last + 1,
  };
  expect(ask(sim, 2, 3, stale)).toMatchObject({ type: "append_reply", term, ok: false } satisfies Partial<AppendReply>);
  expect(sim.store(3).lastLsn()).toBe(last);
  expect(sim.node(3).currentTerm()).toBe(term);
  expect(sim.node(3).leader()).toBeNull();
  expect(ask(sim, 2, 3, vote(term - 1, last + 10, term - 1))).toMatchObject({ term, granted: false });

  // The same append in the current term from the node it voted for is accepted.
  expect(ask(sim, 1, 3, { ...stale, term, entries: [{ ...stale.entries[0]!, term }] })).toMatchObject({
    term,
    ok: true,
    matchLsn: last + 1,
  });
  expect(sim.store(3).get(last + 1)?.term).toBe(term);
  expect(sim.node(3).leader()).toBe(1);
});
