/**
 * Data-plane Worker: the I/O loop around router.ts. Two roles, one thread each:
 *  - "tx": read IP packets from the TUN (non-blocking, up to BATCH per round), encrypt each in
 *    place, send the batch with one sendmmsg; packets without a usable key wait (staged) until
 *    the control thread completes a handshake;
 *  - "rx": recvmmsg up to BATCH datagrams per call, decrypt in place, write IP packets to the TUN;
 *    handshake-class datagrams go to the control thread.
 * The loops block in system calls (never in JS), so they talk to the control thread only through
 * the shared SessionTable and postMessage (which works without returning to the event loop).
 */
import { ptr } from "bun:ffi";
import { EAGAIN, EINTR, errno, libc, POLLIN, SyscallError } from "../../../native/libc.ts";
import { aead } from "../../../native/sodium.ts";
import { UdpBatch } from "../../../native/udp.ts";
import { IN_DELIVER, IN_NOT_DATA, OUT_SEND, OUT_STAGE, PAYLOAD_OFFSET, Router } from "./router.ts";
import { G_DROP_NO_KEY, G_STAGED, G_WORKERS_READY, packEndpoint, type SharedBuffers, SessionTable } from "./session.ts";

declare const self: Worker;

export interface DataplaneStart {
  type: "start";
  role: "tx" | "rx";
  tunFd: number;
  udpFd: number;
  mtu: number;
  buffers: SharedBuffers;
}

export type DataplaneEvent =
  | { type: "ready"; role: "tx" | "rx"; aead: string }
  | { type: "packet"; data: Uint8Array; source: bigint }
  | { type: "kick" }
  | { type: "error"; role: "tx" | "rx"; message: string };

const BATCH = 64;
const MAX_STAGED_PER_PEER = 32;
const STAGED_TTL_MS = 10_000;

/** Buffers whose addresses were handed to the kernel (the UDP batch, poll): never collected. */
const keepAlive: unknown[] = [];

function post(event: DataplaneEvent): void {
  self.postMessage(event);
}

function runTx(msg: DataplaneStart): void {
  const c = libc();
  const table = new SessionTable(msg.buffers);
  const router = new Router(table, aead(), msg.mtu);
  const size = PAYLOAD_OFFSET + msg.mtu + 64;
  const bufs = Array.from({ length: BATCH }, () => new Uint8Array(size));
  const bufPtrs = bufs.map((b) => ptr(b));
  const udp = new UdpBatch(msg.udpFd, bufs);
  keepAlive.push(udp);
  const pfd = new Uint8Array(8);
  const pv = new DataView(pfd.buffer);
  pv.setInt32(0, msg.tunFd, true);
  pv.setInt16(4, POLLIN, true);
  const pfdPtr = ptr(pfd);
  keepAlive.push(pfd);
  const staged = new Map<number, { data: Uint8Array; length: number; at: number }[]>();
  let stagedCount = 0;
  const readLimit = msg.mtu;

  const ask = (peer: number) => {
    if (table.wantHandshake(peer)) post({ type: "kick" });
  };

  // Encrypts buf[i] (payload `length`) and fills header i; true if it is ready to send.
  const prepare = (i: number, length: number, now: number): boolean => {
    const buf = bufs[i]!;
    const result = router.encrypt(buf, length, now);
    if (router.wantHandshake && router.outPeer >= 0) ask(router.outPeer);
    if (result === OUT_SEND) {
      const ep = router.outEndpoint;
      udp.setMessage(i, router.outLength, Number(ep >> 16n), Number(ep & 0xffffn));
      return true;
    }
    if (result === OUT_STAGE) {
      let queue = staged.get(router.outPeer);
      if (!queue) staged.set(router.outPeer, (queue = []));
      if (queue.length >= MAX_STAGED_PER_PEER) {
        queue.shift();
        stagedCount--;
      }
      queue.push({ data: buf.slice(0, PAYLOAD_OFFSET + length), length, at: now });
      stagedCount++;
      table.count(G_STAGED);
    }
    return false;
  };

  const flushStaged = (now: number) => {
    let n = 0;
    for (const [peer, queue] of staged) {
      const slot = table.currentSlot(peer);
      const expired = queue.length > 0 && now - queue[0]!.at > STAGED_TTL_MS;
      if (slot < 0 && !expired) continue;
      while (queue.length > 0) {
        const item = queue.shift()!;
        stagedCount--;
        if (now - item.at > STAGED_TTL_MS) {
          table.count(G_DROP_NO_KEY);
          continue;
        }
        bufs[n]!.set(item.data);
        if (prepare(n, item.length, now)) n++;
        if (n === BATCH) {
          udp.send(n);
          n = 0;
        }
      }
      staged.delete(peer);
    }
    if (n > 0) udp.send(n);
  };

  for (;;) {
    let n = 0;
    let idle = false;
    const now = Date.now();
    while (n < BATCH) {
      const r = c.read(msg.tunFd, bufPtrs[n]! + PAYLOAD_OFFSET, readLimit) as number;
      if (r < 0) {
        const e = errno();
        if (e === EAGAIN) {
          idle = true;
          break;
        }
        if (e === EINTR) continue;
        throw new SyscallError("read(tun)", e);
      }
      if (prepare(n, r, now)) n++;
    }
    if (n > 0) udp.send(n);
    if (stagedCount > 0) flushStaged(Date.now());
    if (idle) c.poll(pfdPtr, 1, stagedCount > 0 ? 20 : 1000);
  }
}

function runRx(msg: DataplaneStart): void {
  const c = libc();
  const table = new SessionTable(msg.buffers);
  const router = new Router(table, aead(), msg.mtu);
  const size = PAYLOAD_OFFSET + 65536;
  const bufs = Array.from({ length: BATCH }, () => new Uint8Array(size));
  const bufPtrs = bufs.map((b) => ptr(b));
  const udp = new UdpBatch(msg.udpFd, bufs);
  keepAlive.push(udp);
  let lastIp = -1;
  let lastPort = -1;
  let lastSource = 0n;

  for (;;) {
    const n = udp.receive();
    if (n === 0) continue;
    const now = Date.now();
    for (let i = 0; i < n; i++) {
      const length = udp.length(i);
      const ip = udp.sourceIp(i);
      const port = udp.sourcePort(i);
      if (ip !== lastIp || port !== lastPort) {
        lastIp = ip;
        lastPort = port;
        lastSource = packEndpoint(ip, port);
      }
      const buf = bufs[i]!;
      const result = router.decrypt(buf, length, lastSource, now);
      if (result === IN_DELIVER) {
        c.write(msg.tunFd, bufPtrs[i]! + PAYLOAD_OFFSET, router.inLength);
      } else if (result === IN_NOT_DATA) {
        post({ type: "packet", data: buf.slice(0, length), source: lastSource });
      }
      if (router.confirmedSlot >= 0) post({ type: "kick" });
      if (router.wantHandshake && table.wantHandshake(router.inPeer)) post({ type: "kick" });
    }
  }
}

self.onmessage = (event: MessageEvent<DataplaneStart>) => {
  const msg = event.data;
  if (msg?.type !== "start") return;
  const table = new SessionTable(msg.buffers);
  post({ type: "ready", role: msg.role, aead: aead().name });
  Atomics.add(table.global, G_WORKERS_READY, 1);
  try {
    if (msg.role === "tx") runTx(msg);
    else runRx(msg);
  } catch (err) {
    post({ type: "error", role: msg.role, message: (err as Error).message });
  }
};
