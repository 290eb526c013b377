import { randomBytes } from "node:crypto";
import { toB64u } from "./base64url.ts";
import { checkPublicKey, publicKeyFromSeed, SEED_LENGTH } from "./ed25519.ts";

/** An Ed25519 identity. keyId is the base64url public key: signers are named by their key. */
export interface KeyPair {
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly keyId: string;
}

export function keyPairFromSeed(seed: Uint8Array): KeyPair {
  const publicKey = publicKeyFromSeed(seed);
  const check = checkPublicKey(publicKey);
  // A seed always yields a prime-order key; anything else is a library bug.
  if (!check.ok) throw new Error(`derived public key refused: ${check.problem}`);
  return { seed: Uint8Array.from(seed), publicKey, keyId: toB64u(publicKey) };
}

/** Key generation sits at the edge (CLI, agents, tests), never inside a decision. */
export function generateKeyPair(random: (n: number) => Uint8Array = (n) => new Uint8Array(randomBytes(n))): KeyPair {
  return keyPairFromSeed(random(SEED_LENGTH));
}
