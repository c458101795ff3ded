/** native/udp.ts on loopback: the batch wrapper's headers say what the kernel sends and received. */
import { expect, test } from "bun:test";
import { closeFd, setNonBlocking } from "../../../native/libc.ts";
import { boundPort, UdpBatch, udpSender, udpSocket } from "../../../native/udp.ts";

const LOOPBACK = 0x7f000001;

/** Two loopback sockets; the receiving one non-blocking, so an empty queue cannot hang the test. */
function withPair(body: (a: number, b: number) => void): void {
  const a = udpSocket({ ip: LOOPBACK, port: 0 });
  const b = udpSocket({ ip: LOOPBACK, port: 0 });
  try {
    setNonBlocking(b, true);
    body(a, b);
  } finally {
    closeFd(a);
    closeFd(b);
  }
}

function receiveAll(batch: UdpBatch, want: number) {
  const got: { length: number; ip: number; port: number; first: number }[] = [];
  for (let tries = 0; got.length < want && tries < 100; tries++) {
    const n = batch.receive();
    for (let i = 0; i < n; i++) {
      got.push({
        length: batch.length(i),
        ip: batch.sourceIp(i),
        port: batch.sourcePort(i),
        first: batch.buffers[i]![0]!,
      });
    }
  }
  return got;
}

test("one sendmmsg of several messages arrives with each length and the sender's address", () => {
  withPair((a, b) => {
    const tx = new UdpBatch(
      a,
      Array.from({ length: 4 }, (_, i) => new Uint8Array(64).fill(i + 1)),
    );
    for (let i = 0; i < 3; i++) tx.setMessage(i, 10 + i, LOOPBACK, boundPort(b));
    tx.send(3);
    const rx = new UdpBatch(
      b,
      Array.from({ length: 4 }, () => new Uint8Array(2048)),
    );
    const from = { ip: LOOPBACK, port: boundPort(a) };
    expect(receiveAll(rx, 3)).toEqual([
      { length: 10, ...from, first: 1 },
      { length: 11, ...from, first: 2 },
      { length: 12, ...from, first: 3 },
    ]);
    expect(rx.receive()).toBe(0); // nothing else queued: EAGAIN, not an error
  });
});

test("udpSender sends one datagram to ip:port", () => {
  withPair((a, b) => {
    udpSender(a)(Uint8Array.of(7, 8, 9), LOOPBACK, boundPort(b));
    const rx = new UdpBatch(b, [new Uint8Array(2048)]);
    expect(receiveAll(rx, 1)).toEqual([{ length: 3, ip: LOOPBACK, port: boundPort(a), first: 7 }]);
  });
});
