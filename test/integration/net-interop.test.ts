/**
 * wolf net speaks WireGuard's wire protocol byte for byte: a wolf node and a wireguard-go node
 * complete the Noise IK handshake (both directions of initiation) and exchange data. This is the
 * end-to-end test vector for our handshake, KDF, mac1 and transport format.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitUntil } from "../../lib/common/wait.ts";
import { decodeKey, encodeKey, newKeyPair } from "../../lib/net/device/keys.ts";
import { publicKeyOf } from "../../lib/net/device/noise.ts";
import {
  type Host,
  TestNet,
  type WolfProcess,
  ensureBuilt,
  netnsSkipReason,
  runWolf,
  runWolfOnce,
} from "../harness/index.ts";
import { wgHex, wgSet, wgSocketPath } from "../harness/wireguard.ts";

const skip = netnsSkipReason() ?? (Bun.which("wireguard-go") ? undefined : "wireguard-go is not installed");
const IFNAME = `wgi${process.pid % 100000}`;

describe.skipIf(Boolean(skip))("wolf net ↔ wireguard-go", () => {
  let net: TestNet;
  let dir: string;
  let wolfHost: Host;
  let wgHost: Host;
  let wolf: WolfProcess;
  let wg: ReturnType<Host["spawn"]>;
  const wgKey = newKeyPair();
  let wolfPub: Uint8Array;

  beforeAll(async () => {
    await ensureBuilt();
    net = await TestNet.create();
    dir = mkdtempSync(join(tmpdir(), "wolf-net-interop-"));
    wolfHost = await net.addHost("wolf");
    wgHost = await net.addHost("wg");
    const config = join(dir, "net.toml");
    expect((await runWolfOnce(["net", "init", "--config", config, "--address", "10.0.10.1"])).code).toBe(0);
    wolfPub = publicKeyOf(decodeKey(readFileSync(join(dir, "net.key"), "utf8")));
    appendFileSync(
      config,
      `\n[[peers]]\nname = "wg"\npublic_key = "${encodeKey(wgKey.publicKey)}"\nendpoint = "${wgHost.ip}:51820"\nallowed_ip = "10.0.10.2"\n`,
    );

    // wireguard-go in the foreground (so the TestNet owns its PID); its UAPI socket dir is shared
    // (existsSync, not Bun.file().exists(): the latter is false for a socket)
    // between namespaces, hence the per-process interface name.
    wg = wgHost.spawn(["env", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1", "wireguard-go", "-f", IFNAME], {
      stdout: "ignore",
      stderr: "ignore",
    });
    await waitUntil(() => existsSync(wgSocketPath(IFNAME)), { timeoutMs: 10_000, what: "wireguard-go's UAPI socket" });
    await wgSet(
      IFNAME,
      `private_key=${wgHex(wgKey.privateKey)}\nlisten_port=51820\npublic_key=${wgHex(wolfPub)}\nendpoint=${wolfHost.ip}:9600\nallowed_ip=10.0.10.1/32\n`,
    );
    for (const cmd of [
      ["addr", "add", "10.0.10.2/24", "dev", IFNAME],
      ["link", "set", IFNAME, "mtu", "1420", "up"],
    ]) {
      expect((await wgHost.exec(["ip", ...cmd])).code).toBe(0);
    }
    wolf = runWolf(["net", "up", "--config", config], { netns: wolfHost.ns, env: { NO_COLOR: "1" } });
    await wolf.waitForOutput(/wolf net up: /, 15_000);
  }, 60_000);

  afterAll(async () => {
    await wolf?.stop(3000);
    wg?.kill("SIGTERM");
    await wg?.exited;
    await net?.destroy();
    rmSync(wgSocketPath(IFNAME), { force: true });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("wolf initiates, wireguard-go answers: ping both ways", async () => {
    await waitUntil(() => wolfHost.canPing("10.0.10.2", 1), { timeoutMs: 15_000, what: "wolf → wireguard-go ping" });
    expect(await wgHost.canPing("10.0.10.1", 1)).toBe(true);
    const peers = JSON.parse(
      (await runWolfOnce(["ctl", "net", "peers", "--json", "--config", join(dir, "net.toml")])).stdout,
    );
    expect(peers[0].endpoint).toBe(`${wgHost.ip}:51820`);
    expect(peers[0].session).not.toBeNull();
  }, 30_000);

  test("wireguard-go initiates, wolf answers (wolf restarted without the peer's endpoint, so it cannot initiate)", async () => {
    await wolf.stop(3000);
    const config = join(dir, "net.toml");
    writeFileSync(config, readFileSync(config, "utf8").replace(`endpoint = "${wgHost.ip}:51820"`, 'endpoint = ""'));
    wolf = runWolf(["net", "up", "--config", config], { netns: wolfHost.ns, env: { NO_COLOR: "1" } });
    await wolf.waitForOutput(/wolf net up: /, 15_000);
    // Re-setting the peer drops wireguard-go's old session, so its next packet starts a handshake.
    await wgSet(IFNAME, `public_key=${wgHex(wolfPub)}\nremove=true\n`);
    await wgSet(IFNAME, `public_key=${wgHex(wolfPub)}\nendpoint=${wolfHost.ip}:9600\nallowed_ip=10.0.10.1/32\n`);
    await waitUntil(() => wgHost.canPing("10.0.10.1", 1), { timeoutMs: 15_000, what: "wireguard-go → wolf ping" });
    expect(wolf.output()).toMatch(/session with wg \(10\.0\.10\.2\) accepted/);
    expect(wolf.output()).not.toMatch(/initiated/);
    expect(await wolfHost.canPing("10.0.10.2", 1)).toBe(true);
  }, 30_000);
});
