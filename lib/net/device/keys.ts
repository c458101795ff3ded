/** X25519 key pairs in WireGuard's text form (standard base64 of 32 bytes) and the 0600 key file. */
import { existsSync, readFileSync, statSync } from "node:fs";
import { ConfigError, WolfError } from "../../common/errors.ts";
import { writeFileAtomic } from "../../common/files.ts";
import { generatePrivateKey, publicKeyOf } from "./noise.ts";

export interface KeyPair {
  privateKey: Uint8Array;
  publicKey: Uint8Array;
}

export function encodeKey(key: Uint8Array): string {
  return Buffer.from(key).toString("base64");
}

/** Decodes a base64 key; throws a clear error naming `what` if it is not exactly 32 bytes. */
export function decodeKey(text: string, what = "key"): Uint8Array {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/]{43}=$/.test(trimmed)) {
    throw new WolfError("config", `${what} is not a 32-byte base64 key (44 characters ending in "=")`);
  }
  return new Uint8Array(Buffer.from(trimmed, "base64"));
}

export function newKeyPair(): KeyPair {
  const privateKey = generatePrivateKey();
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

export function keyPairFromPrivate(privateKey: Uint8Array): KeyPair {
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** Reads the private key file; refuses a file others can read (like ssh does). */
export function loadKeyFile(path: string): KeyPair {
  if (!existsSync(path)) {
    throw new ConfigError("private key file not found", {
      file: path,
      hint: "create one with `wolf net init` (or `wolf net genkey > FILE; chmod 600 FILE`)",
    });
  }
  const mode = statSync(path).mode & 0o777;
  if (mode & 0o077) {
    throw new ConfigError(`private key file is readable by others (mode ${mode.toString(8)})`, {
      file: path,
      hint: `chmod 600 ${path}`,
    });
  }
  return keyPairFromPrivate(decodeKey(readFileSync(path, "utf8"), `private key in ${path}`));
}

/** Writes a new key file with mode 0600; refuses to replace an existing one unless `force`. */
export function writeKeyFile(path: string, keyPair: KeyPair, opts: { force?: boolean } = {}): void {
  if (existsSync(path) && !opts.force) {
    throw new ConfigError("private key file already exists; not overwriting it", {
      file: path,
      hint: "pass --force to replace it (peers will no longer recognise this node)",
    });
  }
  writeFileAtomic(path, `${encodeKey(keyPair.privateKey)}\n`);
}
