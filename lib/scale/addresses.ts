/** Addresses: the URL of a node's API as other nodes and `wolf ctl` reach it. */
import type { ScaleConfig } from "./config.ts";

export function splitHostPort(addr: string): [string, number] {
  const i = addr.lastIndexOf(":");
  return [addr.slice(0, i).replace(/^\[|\]$/g, ""), Number(addr.slice(i + 1))];
}

function wildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "";
}

/** The URL other nodes use for this node's API: [api] advertise, else derived from [api] listen. */
export function apiUrlOf(cfg: ScaleConfig): string {
  if (cfg.api.advertise) return cfg.api.advertise.replace(/\/$/, "");
  const [host, port] = splitHostPort(cfg.api.listen);
  const h = wildcard(host)
    ? cfg.cluster.advertise_address || (wildcard(cfg.cluster.bind_address) ? "127.0.0.1" : cfg.cluster.bind_address)
    : host;
  return `http://${h}:${port}`;
}

/** The URL `wolf ctl` uses on this machine (a wildcard listen address is reached on loopback). */
export function localApiUrl(cfg: ScaleConfig): string {
  const [host, port] = splitHostPort(cfg.api.listen);
  return `http://${wildcard(host) ? "127.0.0.1" : host}:${port}`;
}
