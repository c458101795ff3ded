/** lib/common/daemon-client.ts: the token goes out, answers come back parsed, failures say what to do. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DaemonClient } from "../../../lib/common/daemon-client.ts";
import { WolfError } from "../../../lib/common/errors.ts";

const dir = mkdtempSync(join(tmpdir(), "wolf-daemon-client-"));
const server = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(req) {
    const path = new URL(req.url).pathname;
    if (path === "/echo")
      return Response.json({
        auth: req.headers.get("authorization"),
        body: req.method === "POST" ? await req.json() : null,
      });
    if (path === "/refuse") return Response.json({ ok: false, error: "no such node", hint: "try 2" }, { status: 400 });
    if (path === "/coded") return Response.json({ error: "taken", code: "io" }, { status: 400 });
    return new Response("not json", { status: 503 });
  },
});
afterAll(() => {
  server.stop(true);
  rmSync(dir, { recursive: true, force: true });
});
const base = `http://127.0.0.1:${server.port}`;
const described = { service: "wolf test", startHint: "start it", timeoutMs: 2000 };

async function failure(p: Promise<unknown>): Promise<WolfError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WolfError);
  return err as WolfError;
}

test("sends the token and a JSON body, returns the parsed answer", async () => {
  const c = new DaemonClient({ base, token: "s3cret" }, described);
  expect(await c.request("POST", "/echo", { a: 1 })).toEqual({ auth: "Bearer s3cret", body: { a: 1 } });
  expect(await new DaemonClient({ base }).request("GET", "/echo")).toEqual({ auth: null, body: null });
});

test("a refusal keeps the daemon's message, hint and code; the request is named when asked", async () => {
  const plain = await failure(new DaemonClient({ base }, described).request("GET", "/refuse"));
  expect([plain.code, plain.message, plain.hint]).toEqual(["usage", "no such node", "try 2"]);
  const named = await failure(
    new DaemonClient({ base }, { ...described, namesRequest: true }).request("GET", "/refuse"),
  );
  expect(named.message).toBe("GET /refuse: no such node");
  expect((await failure(new DaemonClient({ base }, described).request("GET", "/coded"))).code).toBe("io");
  const other = await failure(new DaemonClient({ base }, described).request("GET", "/other"));
  expect([other.code, other.message]).toEqual(["state", "the wolf test daemon answered HTTP 503 to GET /other"]);
});

test("nothing listening: not running, with the start hint (TCP and unix socket)", async () => {
  const tcp = await failure(new DaemonClient({ base: "http://127.0.0.1:1" }, described).request("GET", "/status"));
  expect([tcp.code, tcp.message, tcp.hint]).toEqual([
    "state",
    "the wolf test daemon is not running (nothing answers at http://127.0.0.1:1)",
    "start it",
  ]);
  const socketPath = join(dir, "missing.sock");
  const unix = await failure(new DaemonClient({ base: "http://x", socketPath }, described).request("GET", "/status"));
  expect([unix.code, unix.message]).toEqual([
    "state",
    `the wolf test daemon is not running (no control socket at ${socketPath})`,
  ]);
});
