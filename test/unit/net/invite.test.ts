/** Invites: tokens, address allocation without collisions, single use, expiry, authentication. */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCidr, parseIPv4 } from "../../../lib/net/device/allowedips.ts";
import {
  decodeToken,
  encodeToken,
  InviteBook,
  type JoinPeer,
  makeJoinRequest,
  readJoinResponse,
} from "../../../lib/net/invite.ts";
import { encodeKey, newKeyPair } from "../../../lib/net/device/keys.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function book(now: () => number = Date.now) {
  const dir = mkdtempSync(join(tmpdir(), "wolf-invite-"));
  dirs.push(dir);
  const file = join(dir, "invites.json");
  return { file, book: new InviteBook(file, now) };
}
const subnet = parseCidr("10.0.10.0/24")!;
const admitAll = () => ({ subnet: "10.0.10.0/24", peers: [] as JoinPeer[] });

describe("invite tokens", () => {
  test("round-trip, and damaged lines give a clear error", () => {
    const secret = crypto.getRandomValues(new Uint8Array(32));
    const t = {
      endpoint: "192.168.1.5:9600",
      address: "10.0.10.7",
      subnet: "10.0.10.0/24",
      inviterAddress: "10.0.10.1",
      inviterKey: encodeKey(newKeyPair().publicKey),
      secret,
    };
    const line = encodeToken(t);
    expect(line).toMatch(/^wolfnet1:[A-Za-z0-9_-]+$/);
    expect(decodeToken(line)).toEqual(t);
    expect(() => decodeToken("hello")).toThrow(/wolfnet1:/);
    expect(() => decodeToken(line.slice(0, 40))).toThrow(/not a valid invite line/);
  });

  test("every kind of junk is a usage error, never a TypeError", () => {
    const body = {
      e: "192.168.1.5:9600",
      a: "10.0.10.7",
      s: "10.0.10.0/24",
      i: "10.0.10.1",
      k: encodeKey(newKeyPair().publicKey),
      x: Buffer.alloc(32, 1).toString("base64url"),
    };
    const line = (v: unknown) =>
      `wolfnet1:${Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url")}`;
    const junk: [string, RegExp][] = [
      [line("null"), /truncated or damaged/],
      [line("[1,2]"), /truncated or damaged/],
      [line('"text"'), /truncated or damaged/],
      [line("42"), /truncated or damaged/],
      [line({ ...body, e: 5 }), /field e is missing/],
      [line({ ...body, e: "10.0.0.1:99999" }), /endpoint is malformed/],
      [line({ ...body, e: "10.0.0.1:0" }), /endpoint is malformed/],
      [line({ ...body, a: "10.0.99.7" }), /outside the subnet/],
      [line({ ...body, k: "short" }), /public key is malformed/],
      [line({ ...body, x: "c2hvcnQ" }), /secret has the wrong length/],
    ];
    for (const [text, why] of junk) {
      let err: unknown;
      try {
        decodeToken(text);
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string }).code).toBe("usage");
      expect((err as Error).message).toMatch(why);
    }
  });
});

describe("InviteBook", () => {
  test("allocates the lowest free address, never one a peer or a pending invite holds", () => {
    const { book: b } = book();
    const taken = new Set([parseIPv4("10.0.10.1")!, parseIPv4("10.0.10.2")!]);
    expect(b.create({ subnet, taken, ttlMs: 60_000 }).address).toBe("10.0.10.3");
    expect(b.create({ subnet, taken, ttlMs: 60_000 }).address).toBe("10.0.10.4");
    expect(() => b.create({ subnet, taken, ttlMs: 60_000, address: "10.0.10.2" })).toThrow(/taken/);
    expect(() => b.create({ subnet, taken, ttlMs: 60_000, address: "10.0.99.2" })).toThrow(/not in the subnet/);
  });

  test("persists invites (0600) so a restarted daemon still honours them", () => {
    const { file, book: b } = book();
    const inv = b.create({ subnet, taken: new Set(), ttlMs: 60_000 });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = new InviteBook(file);
    const joiner = newKeyPair();
    const r = again.handleRequest(
      makeJoinRequest(inv.secret, { public_key: encodeKey(joiner.publicKey), name: "x", listen_port: 9600 }),
      admitAll,
    );
    expect(r?.accepted?.address).toBe(inv.address);
  });

  test("a damaged invites.json loses only the damaged entries, never crashes the daemon", () => {
    const { file, book: b } = book();
    const inv = b.create({ subnet, taken: new Set(), ttlMs: 60_000 });
    const saved = JSON.parse(readFileSync(file, "utf8"));
    writeFileSync(file, JSON.stringify([null, 7, { id: 1 }, ...saved]));
    const again = new InviteBook(file);
    expect(again.pending().map((p) => p.address)).toEqual([inv.address]);
    writeFileSync(file, "{not json");
    expect(new InviteBook(file).pending()).toEqual([]);
  });

  test("single use: the same joiner may ask again (lost reply), anyone else is refused", () => {
    const { book: b } = book();
    const inv = b.create({ subnet, taken: new Set(), ttlMs: 60_000 });
    const first = newKeyPair();
    const req = makeJoinRequest(inv.secret, {
      public_key: encodeKey(first.publicKey),
      name: "first",
      listen_port: 9600,
    });
    const ok = b.handleRequest(req, admitAll)!;
    expect(ok.accepted?.name).toBe("first");
    expect(readJoinResponse(inv.secret, ok.reply)).toMatchObject({ ok: true, address: inv.address });
    const retry = b.handleRequest(req, admitAll)!;
    expect(retry.accepted).toBeUndefined();
    expect(readJoinResponse(inv.secret, retry.reply)).toMatchObject({ ok: true });
    const other = b.handleRequest(
      makeJoinRequest(inv.secret, { public_key: encodeKey(newKeyPair().publicKey), name: "second", listen_port: 9600 }),
      admitAll,
    )!;
    expect(other.accepted).toBeUndefined();
    expect(readJoinResponse(inv.secret, other.reply)).toMatchObject({
      ok: false,
      error: expect.stringContaining("already used"),
    });
  });

  test("an expired invite is refused", () => {
    let now = 1_000_000;
    const { book: b } = book(() => now);
    const inv = b.create({ subnet, taken: new Set(), ttlMs: 1000 });
    now += 1001;
    const r = b.handleRequest(
      makeJoinRequest(inv.secret, { public_key: encodeKey(newKeyPair().publicKey), name: "", listen_port: 9600 }),
      admitAll,
    )!;
    expect(r.accepted).toBeUndefined();
    expect(readJoinResponse(inv.secret, r.reply)).toMatchObject({
      ok: false,
      error: expect.stringContaining("expired"),
    });
  });

  test("a request under a wrong secret, or tampered, gets no reply at all", () => {
    const { book: b } = book();
    const inv = b.create({ subnet, taken: new Set(), ttlMs: 60_000 });
    const key = encodeKey(newKeyPair().publicKey);
    const wrong = crypto.getRandomValues(new Uint8Array(32));
    expect(
      b.handleRequest(makeJoinRequest(wrong, { public_key: key, name: "", listen_port: 9600 }), admitAll),
    ).toBeUndefined();
    const req = makeJoinRequest(inv.secret, { public_key: key, name: "", listen_port: 9600 });
    req[req.length - 1]! ^= 1;
    expect(b.handleRequest(req, admitAll)).toBeUndefined();
    // The reply is readable only with the secret.
    const good = b.handleRequest(
      makeJoinRequest(inv.secret, { public_key: key, name: "", listen_port: 9600 }),
      admitAll,
    )!;
    expect(readJoinResponse(wrong, good.reply)).toBeUndefined();
  });
});
