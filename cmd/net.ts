/** `wolf net`: encrypted mesh VPN over TUN. Wiring only. */
import { defineCommand } from "citty";
import { notBuilt } from "../lib/common/cli.ts";
import { configArgs, dataDirArg, initCommand, validateCommand } from "../lib/common/config-commands.ts";
import { netSchema } from "../lib/net/config.ts";

const ISSUE = "issue 4: mesh VPN";
const common = { ...configArgs("net"), ...dataDirArg };

export const netCommand = defineCommand({
  meta: { name: "net", description: "Encrypted mesh VPN over TUN with invite/join" },
  subCommands: {
    init: initCommand(netSchema, {
      args: { address: { type: "string", description: "This node's overlay address", valueHint: "IP" } },
      overrides: (args) => (args.address ? { interface: { address: args.address } } : {}),
    }),
    validate: validateCommand(netSchema),
    genkey: notBuilt("net genkey", "Print a new private key", ISSUE),
    pubkey: notBuilt("net pubkey", "Print the public key of a private key read from stdin", ISSUE),
    token: notBuilt("net token", "Print this node's peer token (endpoint, address, public key)", ISSUE, common),
    invite: notBuilt("net invite", "Print a one-time invite line for a new node", ISSUE, common),
    join: notBuilt("net join", "Join a mesh with an invite line", ISSUE, {
      ...common,
      token: { type: "positional", description: "Invite line from `wolf net invite`", required: true },
    }),
    up: notBuilt("net up", "Run the mesh daemon (creates the TUN interface)", ISSUE, common),
  },
});
