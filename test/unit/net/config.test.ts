import { describe, expect, test } from "bun:test";
import { parseConfig, renderConfig } from "../../../lib/common/config/index.ts";
import { netSchema, netSettings } from "../../../lib/net/config.ts";
import { encodeKey, newKeyPair } from "../../../lib/net/device/keys.ts";

const key = () => encodeKey(newKeyPair().publicKey);
const load = (extra: string, iface = "") =>
  netSettings(parseConfig(netSchema, `[interface]\naddress = "10.0.10.1"\n${iface}\n${extra}`, "net.toml"), "net.toml");

describe("net.toml", () => {
  test("defaults: wolfnet0, 10.0.10.0/24, port 9600, MTU 1400", () => {
    const s = netSettings(parseConfig(netSchema, renderConfig(netSchema), "net.toml"), "net.toml");
    expect([s.interfaceName, s.listenPort, s.mtu, s.subnet.length]).toEqual(["wolfnet0", 9600, 1400, 24]);
  });
  test("peers parse to keys and addresses", () => {
    const s = load(
      `[[peers]]\nname = "b"\npublic_key = "${key()}"\nendpoint = "host.example:9600"\nallowed_ip = "10.0.10.2"\n`,
    );
    expect(s.peers[0]!.publicKey.length).toBe(32);
    expect(s.peers[0]!.endpoint).toBe("host.example:9600");
  });
  test("clear errors: address outside the subnet, a peer without allowed_ip, duplicate overlay addresses", () => {
    expect(() => load("", `subnet = "10.0.20.0/24"`)).toThrow(/not inside subnet/);
    expect(() => load(`[[peers]]\npublic_key = "${key()}"\n`)).toThrow(/allowed_ip/);
    expect(() => load(`[[peers]]\npublic_key = "${key()}"\nallowed_ip = "10.0.10.1"\n`)).toThrow(
      /already used by this node/,
    );
    expect(() => load(`[[peers]]\npublic_key = "not a key"\nallowed_ip = "10.0.10.2"\n`)).toThrow(/public_key/);
  });
  test("the schema itself runs these checks, so `wolf net validate` and `init` refuse what `up` would", () => {
    expect(() =>
      parseConfig(netSchema, `[interface]\naddress = "10.0.10.1"\nsubnet = "10.0.20.0/24"\n`, "net.toml"),
    ).toThrow("net.toml: interface.address: address 10.0.10.1 is not inside subnet 10.0.20.0/24");
    const k = key();
    const twice = `[[peers]]\npublic_key = "${k}"\nallowed_ip = "10.0.10.2"\n[[peers]]\npublic_key = "${key()}"\nallowed_ip = "10.0.10.2"\n`;
    expect(() => parseConfig(netSchema, twice, "net.toml")).toThrow(
      /peers\[1\]\.allowed_ip: allowed_ip 10\.0\.10\.2 is already used/,
    );
  });
});
