/** Free TCP ports for test servers. */

/** Ports this process handed out already: the kernel may offer a just-closed port again. */
const handedOut = new Set<string>();

/**
 * A TCP port that nothing listens on right now (the kernel picks it). Another process can still
 * take it before you bind, so servers started on it should retry with a new port on EADDRINUSE
 * (startMariaDB does).
 */
export async function freePort(hostname = "127.0.0.1"): Promise<number> {
  return unusedPort("TCP", () => {
    const listener = Bun.listen({ hostname, port: 0, socket: { data() {} } });
    const port = listener.port;
    listener.stop(true);
    return port;
  });
}

/** A UDP port that nothing is bound to right now (for discovery beacons); same caveat as freePort. */
export async function freeUdpPort(hostname = "127.0.0.1"): Promise<number> {
  return unusedPort("UDP", async () => {
    const socket = await Bun.udpSocket({ hostname, port: 0 });
    const port = socket.port;
    socket.close();
    return port;
  });
}

async function unusedPort(kind: string, bindAny: () => number | Promise<number>): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await bindAny();
    if (!handedOut.has(`${kind}:${port}`)) {
      handedOut.add(`${kind}:${port}`);
      return port;
    }
  }
  throw new Error(`freePort: the kernel kept offering ${kind} ports this process already handed out`);
}

/** `count` distinct free ports. */
export async function freePorts(count: number, hostname = "127.0.0.1"): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort(hostname));
  return ports;
}
