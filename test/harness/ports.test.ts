import { expect, test } from "bun:test";
import { freePort, freePorts } from "./ports.ts";

test("freePort returns distinct ports nothing listens on", async () => {
  const ports = await freePorts(5);
  expect(new Set(ports).size).toBe(5);
  for (const port of ports) {
    const listener = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }); // throws if taken
    listener.stop(true);
  }
  const another = await freePort();
  expect(ports).not.toContain(another);
});
