/** Free TCP ports for test servers. */

/** Ports this process handed out already: the kernel may offer a just-closed port again. */
const handedOut = new Set<number>();

/**
 * A TCP port that nothing listens on right now (the kernel picks it). Another process can still
 * take it before you bind, so servers started on it should retry with a new port on EADDRINUSE
 * (startMariaDB does).
 */
export async function freePort(hostname = "127.0.0.1"): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const listener = Bun.listen({ hostname, port: 0, socket: { data() {} } });
    const port = listener.port;
    listener.stop(true);
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("freePort: the kernel kept offering ports this process already handed out");
}

/** `count` distinct free ports. */
export async function freePorts(count: number, hostname = "127.0.0.1"): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort(hostname));
  return ports;
}
