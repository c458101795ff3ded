/**
 * An in-memory network with the Transport interface, for fast deterministic tests: every delivery
 * is a timer on the injected clock (a SimClock in tests), with a delay drawn from the seeded Rng
 * (so messages overtake each other), optional loss, and partitions that may be one-way.
 */
import { checkAppendShape, decodeMessage, encodeMessage } from "./codec.ts";
import type { Clock, Message, MessageHandler, NodeId, Rng, Transport } from "./types.ts";

export interface SimNetworkOptions {
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Probability that any one message (request or reply) is lost. */
  lossRate?: number;
  /**
   * Send every message through the TCP transport's codec (encode, then decode with its checks), so
   * a message the real transport would drop as malformed is dropped here too, and counted.
   */
  codec?: boolean;
}

export class SimNetwork {
  private endpoints = new Map<NodeId, MemoryTransport>();
  /** Key from * 65536 + to means `from` cannot reach `to`. */
  private blocked = new Set<number>();
  /** Per sender, bumped by a power loss: what it sent before that and has not arrived is lost. */
  private epochs = new Map<NodeId, number>();
  minDelayMs: number;
  maxDelayMs: number;
  lossRate: number;
  readonly codec: boolean;
  readonly stats = { sent: 0, delivered: 0, lost: 0, blocked: 0, malformed: 0 };
  /** With `codec`: why each dropped message was malformed. */
  readonly malformed: string[] = [];

  constructor(
    readonly clock: Clock,
    private readonly rng: Rng,
    opts: SimNetworkOptions = {},
  ) {
    this.minDelayMs = opts.minDelayMs ?? 1;
    this.maxDelayMs = opts.maxDelayMs ?? 10;
    this.lossRate = opts.lossRate ?? 0;
    this.codec = opts.codec ?? false;
  }

  /**
   * @internal What the receiver gets: a copy, or (codec) the decoded bytes; undefined if dropped
   * as malformed. Without `codec` the codec's cheap structural check on appends still runs.
   */
  wire(msg: Message): Message | undefined {
    try {
      if (this.codec) return decodeMessage(encodeMessage(msg));
      if (msg.type === "append") checkAppendShape(msg);
      return cloneMessage(msg);
    } catch (err) {
      this.stats.malformed++;
      if (this.malformed.length < 20) this.malformed.push(`${msg.type}: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** A fresh endpoint for `id` (a restarted node gets a new one; the old one goes deaf). */
  transport(id: NodeId): MemoryTransport {
    this.endpoints.get(id)?.close();
    const t = new MemoryTransport(id, this);
    this.endpoints.set(id, t);
    return t;
  }

  /** One direction only: `from` cannot reach `to`. */
  blockOneWay(from: NodeId, to: NodeId): void {
    this.blocked.add(from * 65536 + to);
  }
  block(a: NodeId, b: NodeId): void {
    this.blockOneWay(a, b);
    this.blockOneWay(b, a);
  }
  /** Cuts every link between different groups. */
  partition(...groups: NodeId[][]): void {
    for (const g of groups)
      for (const h of groups) if (g !== h) for (const a of g) for (const b of h) this.blockOneWay(a, b);
  }
  isolate(id: NodeId, all: NodeId[]): void {
    for (const other of all) if (other !== id) this.block(id, other);
  }
  /** A power loss at `from`: the messages it sent that are still in flight never arrive. */
  dropInFlightFrom(from: NodeId): void {
    this.epochs.set(from, (this.epochs.get(from) ?? 0) + 1);
  }
  heal(): void {
    this.blocked.clear();
  }
  canReach(from: NodeId, to: NodeId): boolean {
    return this.blocked.size === 0 || !this.blocked.has(from * 65536 + to);
  }

  /** @internal Schedules delivery; `arrive` runs only if the message survives and `to` still listens. */
  carry(from: NodeId, to: NodeId, arrive: (endpoint: MemoryTransport) => void): void {
    this.stats.sent++;
    if (!this.canReach(from, to)) {
      this.stats.blocked++;
      return;
    }
    if (this.lossRate > 0 && this.rng() < this.lossRate) {
      this.stats.lost++;
      return;
    }
    const target = this.endpoints.get(to);
    if (!target) {
      this.stats.lost++;
      return;
    }
    const delay = this.minDelayMs + this.rng() * (this.maxDelayMs - this.minDelayMs);
    const epoch = this.epochs.get(from) ?? 0;
    this.clock.setTimeout(() => {
      // Checked again on arrival: a partition or crash that happened in flight also loses it.
      if (
        target.closed ||
        this.endpoints.get(to) !== target ||
        !this.canReach(from, to) ||
        (this.epochs.get(from) ?? 0) !== epoch
      ) {
        this.stats.lost++;
        return;
      }
      this.stats.delivered++;
      arrive(target);
    }, delay);
  }
}

/** Copies what a receiver could otherwise share with the sender (entries are kept by reference in stores). */
function cloneMessage(msg: Message): Message {
  if (msg.type === "append") return { ...msg, entries: msg.entries.map((e) => ({ ...e })) };
  if (msg.type === "ping") return { ...msg, info: { ...msg.info } };
  return { ...msg };
}

export class MemoryTransport implements Transport {
  private handler: MessageHandler | undefined;
  private nextRequestId = 1;
  private pending = new Map<number, (reply: Message | undefined) => void>();
  closed = false;

  constructor(
    readonly localId: NodeId,
    private readonly net: SimNetwork,
  ) {}

  setHandler(handler: MessageHandler): void {
    this.handler = handler;
  }
  setPeerAddress(): void {}
  counters(): Record<string, number> {
    return {};
  }

  send(to: NodeId, msg: Message): void {
    if (this.closed) return;
    const copy = this.net.wire(msg);
    if (!copy) return;
    const from = this.localId;
    this.net.carry(from, to, (target) => target.handler?.(from, copy, undefined));
  }

  request(to: NodeId, msg: Message, timeoutMs: number, done: (reply: Message | undefined) => void): void {
    if (this.closed) return;
    const id = this.nextRequestId++;
    const clock = this.net.clock;
    const timer = clock.setTimeout(() => {
      if (this.pending.delete(id)) done(undefined);
    }, timeoutMs);
    this.pending.set(id, (reply) => {
      clock.clearTimeout(timer);
      done(reply);
    });
    const copy = this.net.wire(msg);
    if (!copy) return; // dropped as malformed: the request times out
    const from = this.localId;
    this.net.carry(from, to, (target) => {
      let answered = false;
      target.handler?.(from, copy, (answer) => {
        if (answered || target.closed) return;
        answered = true;
        const back = this.net.wire(answer);
        if (!back) return;
        this.net.carry(to, from, (origin) => {
          if (origin !== this) return;
          const cb = this.pending.get(id);
          if (cb) {
            this.pending.delete(id);
            cb(back);
          }
        });
      });
    });
  }

  close(): void {
    this.closed = true;
    this.pending.clear();
  }
}
