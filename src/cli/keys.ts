// `failclosed keys generate|show`: Ed25519 identities as small JSON files. A key file holds the
// seed, so it is written 0600 and `show` never prints the seed.
import { Command } from "commander";
import { bytesEqual, fromB64u, toB64u } from "../crypto/base64url.ts";
import { SEED_LENGTH } from "../crypto/ed25519.ts";
import { generateKeyPair, keyPairFromSeed, type KeyPair } from "../crypto/keys.ts";
import { CliError, jsonText, readJsonFile, writeOutFile, type CliIo } from "./io.ts";

export const KEY_FILE_KIND = "failclosed/key/v1";

export interface KeyFile {
  kind: typeof KEY_FILE_KIND;
  keyId: string;
  publicKey: string;
  seed: string;
  createdAt: string;
}

export function keyFileOf(k: KeyPair, createdAt: number): KeyFile {
  return { kind: KEY_FILE_KIND, keyId: k.keyId, publicKey: toB64u(k.publicKey), seed: toB64u(k.seed), createdAt: new Date(createdAt).toISOString() };
}

/** Read a key file; a seed that does not derive the stated public key is refused (VERIFICATION). */
export function readKeyFile(path: string): KeyPair {
  const v = readJsonFile(path, "key file");
  if (typeof v !== "object" || v === null || Array.isArray(v) || v["kind"] !== KEY_FILE_KIND) {
    throw new CliError("INVALID_INPUT", `${path}: not a ${KEY_FILE_KIND} key file`);
  }
  const seed = fromB64u(v["seed"], SEED_LENGTH);
  if (!seed) throw new CliError("INVALID_INPUT", `${path}: seed is not ${SEED_LENGTH} bytes of base64url`);
  const key = keyPairFromSeed(seed);
  const pub = fromB64u(v["publicKey"], 32);
  if (!pub || !bytesEqual(pub, key.publicKey) || v["keyId"] !== key.keyId) {
    throw new CliError("VERIFICATION", `${path}: publicKey/keyId do not match the seed (edited or corrupted key file)`);
  }
  return key;
}

export function keysCommand(io: CliIo): Command {
  const keys = new Command("keys").description("generate and inspect Ed25519 identity keys");
  keys
    .command("generate")
    .description("make a new Ed25519 key pair (JSON with seed, publicKey and keyId)")
    .option("--out <file>", "write the key here (mode 0600); without it the key JSON goes to stdout")
    .option("--force", "overwrite an existing --out file")
    .option("--json", "print the result as JSON")
    .action((o: { out?: string; force?: boolean; json?: boolean }) => {
      const key = generateKeyPair();
      const file = keyFileOf(key, Date.now());
      if (o.out === undefined) {
        io.out(jsonText(file));
        return;
      }
      writeOutFile(o.out, jsonText(file), { secret: true, force: o.force === true });
      io.out(o.json ? jsonText({ keyId: key.keyId, publicKey: file.publicKey, file: o.out }) : `${key.keyId}\nwrote ${o.out} (mode 0600)\n`);
    });
  keys
    .command("show")
    .description("print a key file's keyId and public key (never the seed), after checking they match the seed")
    .requiredOption("--key <file>", "key file")
    .option("--json", "print the result as JSON")
    .action((o: { key: string; json?: boolean }) => {
      const key = readKeyFile(o.key);
      const info = { keyId: key.keyId, publicKey: toB64u(key.publicKey) };
      io.out(o.json ? jsonText(info) : `keyId      ${info.keyId}\npublicKey  ${info.publicKey}\n`);
    });
  return keys;
}
