/**
 * Demo step for wolf net: three hosts (network namespaces on one bridge). The first node is set up
 * with `init` + `up`; the other two join it with `invite`/`join` — no keys copied by hand. Then
 * `wolf ctl net peers` and a ping across the encrypted overlay, and everything is torn down.
 */
import { TestNet } from "../test/harness/netns.ts";
import { runWolf, runWolfOnce, type WolfProcess } from "../test/harness/wolf.ts";
import { waitUntil } from "../lib/common/wait.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

async function show(ns: string, host: string, args: string[]): Promise<string> {
  process.stdout.write(`[${host}]$ wolf ${args.join(" ")}\n`);
  const r = await runWolfOnce(args, { netns: ns, env: { NO_COLOR: "1" } });
  process.stdout.write(r.stdout + r.stderr);
  if (r.code !== 0) throw new Error(`wolf ${args.join(" ")} exited with ${r.code}`);
  return r.stdout;
}

export async function demoNet(): Promise<void> {
  const net = await TestNet.create();
  const dir = mkdtempSync(join(tmpdir(), "wolf-demo-net-"));
  const daemons: WolfProcess[] = [];
  try {
    const hosts = [await net.addHost("n1"), await net.addHost("n2"), await net.addHost("n3")];
    const config = (i: number) => join(dir, `n${i + 1}`, "net.toml");
    const up = async (i: number) => {
      process.stdout.write(`[n${i + 1}]$ wolf net up --config ${config(i)} &\n`);
      const daemon = runWolf(["net", "up", "--config", config(i)], { netns: hosts[i]!.ns, env: { NO_COLOR: "1" } });
      daemons.push(daemon);
      await daemon.waitForOutput(/wolf net up: /, 15_000);
    };

    await show(hosts[0]!.ns, "n1", ["net", "init", "--config", config(0), "--address", "10.0.10.1"]);
    await up(0);
    for (const i of [1, 2]) {
      const line = (await show(hosts[0]!.ns, "n1", ["net", "invite", "--config", config(0)])).trim();
      await show(hosts[i]!.ns, `n${i + 1}`, ["net", "join", line, "--config", config(i), "--name", `n${i + 1}`]);
      await up(i);
    }

    // The first packet waits for a handshake: poll until the overlay answers, then show a ping.
    await waitUntil(() => hosts[1]!.canPing("10.0.10.3", 1), {
      timeoutMs: 20_000,
      what: "n2 to reach n3 over the overlay",
    });
    await waitUntil(() => hosts[2]!.canPing("10.0.10.1", 1), {
      timeoutMs: 20_000,
      what: "n3 to reach n1 over the overlay",
    });
    process.stdout.write("[n2]$ ping -c 3 10.0.10.3\n");
    const ping = await hosts[1]!.exec(["ping", "-c", "3", "-i", "0.2", "10.0.10.3"]);
    process.stdout.write(ping.stdout);
    await show(hosts[0]!.ns, "n1", ["ctl", "net", "peers", "--config", config(0)]);
  } finally {
    await Promise.all(daemons.map((d) => d.stop(3000)));
    await net.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) await demoNet();
