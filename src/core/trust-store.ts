// The gateway's view of who is trusted. Keys enter only through here, where small-order and
// non-canonical encodings are refused (DESIGN §2); every change is handed to a listener so
// the gateway can record it in the audit log before it takes effect.
import { fromB64u } from "../crypto/base64url.ts";
import { checkPublicKey, PUBLIC_KEY_LENGTH } from "../crypto/ed25519.ts";
import { policyDigest, type PolicyDocument } from "../policy/policy-document.ts";
import type { TrustSnapshot } from "./types.ts";

export type TrustStoreErrorCode = "BAD_KEY" | "UNKNOWN_KEY" | "KEY_REVOKED" | "BAD_POLICY";

export class TrustStoreError extends Error {
  override readonly name = "TrustStoreError";
  constructor(
    readonly code: TrustStoreErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export type TrustRole = "authority" | "gateway";

export type TrustEvent =
  | { op: "authority.add" | "authority.remove" | "gateway.add" | "gateway.remove"; keyId: string }
  | { op: "key.revoke"; keyId: string }
  | { op: "artifact.revoke"; id: string }
  | { op: "policy.activate"; policyDigest: string; document: PolicyDocument };

/** Refuses keys that are not a canonical encoding of a prime-order point. */
export function assertAcceptableKey(keyId: string): void {
  const bytes = fromB64u(keyId, PUBLIC_KEY_LENGTH);
  if (!bytes) throw new TrustStoreError("BAD_KEY", "key id is not a base64url 32-byte Ed25519 key");
  const check = checkPublicKey(bytes);
  if (!check.ok) throw new TrustStoreError("BAD_KEY", `public key refused: ${check.problem}`);
}

export class TrustStore {
  private readonly authorities = new Set<string>();
  private readonly gateways = new Set<string>();
  private readonly revokedKeys = new Set<string>();
  private readonly revokedArtifacts = new Set<string>();
  private policy: { digest: string; document: PolicyDocument } | null = null;

  constructor(private readonly onChange: (e: TrustEvent) => void = () => undefined) {}

  register(role: TrustRole, keyId: string): void {
    assertAcceptableKey(keyId);
    if (this.revokedKeys.has(keyId)) throw new TrustStoreError("KEY_REVOKED", "a revoked key cannot be registered again");
    const set = role === "authority" ? this.authorities : this.gateways;
    if (set.has(keyId)) return;
    set.add(keyId);
    this.onChange({ op: role === "authority" ? "authority.add" : "gateway.add", keyId });
  }

  remove(role: TrustRole, keyId: string): void {
    const set = role === "authority" ? this.authorities : this.gateways;
    if (!set.delete(keyId)) throw new TrustStoreError("UNKNOWN_KEY", "no such key");
    this.onChange({ op: role === "authority" ? "authority.remove" : "gateway.remove", keyId });
  }

  /** Rotation: the new key is registered before the old one leaves, so there is no gap. */
  rotate(role: TrustRole, oldKeyId: string, newKeyId: string): void {
    const set = role === "authority" ? this.authorities : this.gateways;
    if (!set.has(oldKeyId)) throw new TrustStoreError("UNKNOWN_KEY", "the key to rotate out is not registered");
    this.register(role, newKeyId);
    this.remove(role, oldKeyId);
  }

  /** Revoking a key also untrusts it; everything it signed is denied from now on. */
  revokeKey(keyId: string): void {
    if (this.revokedKeys.has(keyId)) return;
    this.revokedKeys.add(keyId);
    this.authorities.delete(keyId);
    this.gateways.delete(keyId);
    this.onChange({ op: "key.revoke", keyId });
  }

  revokeArtifact(id: string): void {
    if (this.revokedArtifacts.has(id)) return;
    this.revokedArtifacts.add(id);
    this.onChange({ op: "artifact.revoke", id });
  }

  activatePolicy(document: PolicyDocument): string {
    let digest: string;
    try {
      digest = policyDigest(document);
    } catch (e) {
      throw new TrustStoreError("BAD_POLICY", e instanceof Error ? e.message : "bad policy");
    }
    this.policy = { digest, document };
    this.onChange({ op: "policy.activate", policyDigest: digest, document });
    return digest;
  }

  has(role: TrustRole, keyId: string): boolean {
    return (role === "authority" ? this.authorities : this.gateways).has(keyId);
  }

  snapshot(): TrustSnapshot {
    return {
      authorities: [...this.authorities].sort(),
      gateways: [...this.gateways].sort(),
      revokedArtifacts: [...this.revokedArtifacts].sort(),
      revokedKeys: [...this.revokedKeys].sort(),
      policy: this.policy,
    };
  }
}
