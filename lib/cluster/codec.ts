/**
 * Message encoding for the wire: a JSON header plus the entries' data as raw bytes after it
 * (no base64 inflation for log shipping). Decoding validates the shape: even an authenticated
 * peer running another version must not crash us.
 */
import { WolfError } from "../common/errors.ts";
import type { AppendRequest, EntryKind, LogEntry, Message } from "./types.ts";

const TYPES = new Set(["vote", "vote_reply", "append", "append_reply", "timeout_now", "ping"]);
const KINDS = new Set<EntryKind>(["data", "noop", "config"]);

export function encodeMessage(msg: Message): Buffer {
  if (msg.type !== "append" || msg.entries.length === 0) {
    const json = Buffer.from(JSON.stringify(msg));
    const out = Buffer.allocUnsafe(4 + json.length);
    out.writeUInt32BE(json.length, 0);
    out.set(json, 4);
    return out;
  }
  const header = {
    ...msg,
    entries: msg.entries.map((e) => ({ lsn: e.lsn, term: e.term, kind: e.kind, n: e.data.length })),
  };
  const json = Buffer.from(JSON.stringify(header));
  let total = 4 + json.length;
  for (const e of msg.entries) total += e.data.length;
  const out = Buffer.allocUnsafe(total);
  out.writeUInt32BE(json.length, 0);
  out.set(json, 4);
  let off = 4 + json.length;
  for (const e of msg.entries) {
    out.set(e.data, off);
    off += e.data.length;
  }
  return out;
}

function bad(reason: string): never {
  throw new WolfError("protocol", `malformed cluster message: ${reason}`);
}

const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0;

/** Entries of an append are contiguous and start right after prevLsn. Throws otherwise. */
export function checkAppendShape(msg: AppendRequest): void {
  const { entries } = msg;
  for (let i = 1; i < entries.length; i++)
    if (entries[i]!.lsn !== entries[i - 1]!.lsn + 1) bad("entries not contiguous");
  if (entries.length > 0 && entries[0]!.lsn !== msg.prevLsn + 1) bad("entries do not follow prevLsn");
}

export function decodeMessage(buf: Uint8Array): Message {
  if (buf.length < 4) bad("too short");
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const jsonLen = view.readUInt32BE(0);
  if (4 + jsonLen > view.length) bad("header length beyond the frame");
  let msg: Record<string, unknown>;
  try {
    msg = JSON.parse(view.subarray(4, 4 + jsonLen).toString("utf8")) as Record<string, unknown>;
  } catch {
    bad("header is not JSON");
  }
  if (typeof msg !== "object" || msg === null || !TYPES.has(msg.type as string)) bad("unknown type");
  if (!isNum(msg.term)) bad("term missing");
  if (msg.type === "append") {
    for (const k of ["prevLsn", "prevTerm", "commitLsn", "leaderLastLsn"]) if (!isNum(msg[k])) bad(`${k} missing`);
    if (!Array.isArray(msg.entries)) bad("entries missing");
    let off = 4 + jsonLen;
    const entries: LogEntry[] = [];
    for (const raw of msg.entries as Record<string, unknown>[]) {
      if (!isNum(raw.lsn) || !isNum(raw.term) || !isNum(raw.n) || !KINDS.has(raw.kind as EntryKind)) bad("bad entry");
      if (off + raw.n > view.length) bad("entry data beyond the frame");
      entries.push({
        lsn: raw.lsn,
        term: raw.term,
        kind: raw.kind as EntryKind,
        data: new Uint8Array(view.subarray(off, off + raw.n)),
      });
      off += raw.n;
    }
    msg.entries = entries;
    checkAppendShape(msg as unknown as AppendRequest);
  } else if (msg.type === "append_reply") {
    if (
      typeof msg.ok !== "boolean" ||
      !isNum(msg.matchLsn) ||
      typeof msg.hintLsn !== "number" ||
      (msg.epoch !== undefined && !isNum(msg.epoch)) ||
      (msg.volatile !== undefined && typeof msg.volatile !== "boolean")
    )
      bad("bad append reply");
  } else if (msg.type === "vote") {
    if (
      !isNum(msg.lastLsn) ||
      !isNum(msg.lastTerm) ||
      typeof msg.pre !== "boolean" ||
      typeof msg.handover !== "boolean"
    )
      bad("bad vote");
  } else if (msg.type === "vote_reply") {
    if (typeof msg.granted !== "boolean" || (msg.recovering !== undefined && typeof msg.recovering !== "boolean"))
      bad("bad vote reply");
  } else if (msg.type === "ping") {
    const info = msg.info as Record<string, unknown> | undefined;
    if (!info || !isNum(info.id) || !isNum(info.lastLsn) || !isNum(info.lastTerm) || typeof info.state !== "string")
      bad("bad ping");
  }
  return msg as unknown as Message;
}
