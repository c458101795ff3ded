/** A free UDP port on 127.0.0.1 (the kernel picks it; handed out once per process). */
import { createSocket } from "node:dgram";

const handedOut = new Set<number>();

export async function freePort(_kind: "udp"): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const s = createSocket("udp4");
    const port = await new Promise<number>((resolve) => s.bind(0, "127.0.0.1", () => resolve(s.address().port)));
    s.close();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("no free UDP port");
}
