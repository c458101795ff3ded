/**
 * Which peer owns an overlay address: longest-prefix match over IPv4 prefixes (a peer's
 * `allowed_ip` is a /32; a gateway peer may own a wider prefix). Used both ways: to pick the peer
 * a packet from the TUN goes to, and to check that a decrypted packet's source belongs to the peer
 * that sent it (cryptokey routing).
 */

export interface Prefix {
  ip: number;
  length: number;
}

export function parseIPv4(text: string): number | undefined {
  const parts = text.trim().split(".");
  if (parts.length !== 4) return undefined;
  let ip = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    ip = ip * 256 + n;
  }
  return ip >>> 0;
}

export function formatIPv4(ip: number): string {
  return [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join(".");
}

export function maskOf(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

export function parseCidr(text: string): Prefix | undefined {
  const [addr, len, extra] = text.trim().split("/");
  if (extra !== undefined || addr === undefined) return undefined;
  const ip = parseIPv4(addr);
  const length = len === undefined ? 32 : /^\d{1,2}$/.test(len) ? Number(len) : NaN;
  if (ip === undefined || !(length >= 0 && length <= 32)) return undefined;
  return { ip: (ip & maskOf(length)) >>> 0, length };
}

export function inPrefix(ip: number, prefix: Prefix): boolean {
  return (ip & maskOf(prefix.length)) >>> 0 === prefix.ip;
}

export class AllowedIps<T> {
  private readonly exact = new Map<number, T>();
  /** Non-/32 prefixes, longest first. */
  private wider: { prefix: Prefix; value: T }[] = [];

  insert(prefix: Prefix, value: T): void {
    const ip = (prefix.ip & maskOf(prefix.length)) >>> 0;
    if (prefix.length === 32) {
      this.exact.set(ip, value);
      return;
    }
    this.wider = this.wider.filter((e) => !(e.prefix.ip === ip && e.prefix.length === prefix.length));
    this.wider.push({ prefix: { ip, length: prefix.length }, value });
    this.wider.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  removeValue(value: T): void {
    for (const [ip, v] of this.exact) if (v === value) this.exact.delete(ip);
    this.wider = this.wider.filter((e) => e.value !== value);
  }

  clear(): void {
    this.exact.clear();
    this.wider = [];
  }

  lookup(ip: number): T | undefined {
    const hit = this.exact.get(ip >>> 0);
    if (hit !== undefined) return hit;
    for (const e of this.wider) if (inPrefix(ip, e.prefix)) return e.value;
    return undefined;
  }
}
