// The CLI as a user runs it: a child process per command, files in a temp dir, exit codes and
// outputs checked — and every signed output re-verified here, independently of the CLI.
import { execFile } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { artifactId } from "../../src/core/artifacts.ts";
import { wideningReason } from "../../src/core/scope.ts";
import type { SignedArtifact, SignedRevocation } from "../../src/core/types.ts";
import { fromB64u } from "../../src/crypto/base64url.ts";
import { verifySigned } from "../../src/crypto/signing.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = join(ROOT, "src/cli/main.ts");
// `node --import tsx` resolves "tsx" from the working directory; the commands run in a temp dir,
// so hand node the loader's resolved URL instead.
const TSX = import.meta.resolve("tsx");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(args: string[], cwd: string, entry: string[] = ["--import", TSX, MAIN]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...entry, ...args], { cwd, env: { ...process.env, NO_COLOR: "1" }, timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const json = <T>(text: string): T => JSON.parse(text) as T;
const pub = (keyId: string): Uint8Array => fromB64u(keyId, 32)!;

let dir: string;
const cli = (...args: string[]): Promise<Run> => run(args, dir);
const readJson = async <T>(f: string): Promise<T> => json<T>(await readFile(join(dir, f), "utf8"));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "failclosed-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("keys → issue → delegate → revoke", () => {
  const ids: Record<string, string> = {};

  it("generates keys as 0600 files, never overwriting one", async () => {
    for (const name of ["authority", "agent", "helper", "mallory"]) {
      const r = await cli("keys", "generate", "--out", `${name}.json`, "--json");
      expect(r.code, r.stderr).toBe(0);
      const out = json<{ keyId: string; file: string }>(r.stdout);
      ids[name] = out.keyId;
      expect(statSync(join(dir, `${name}.json`)).mode & 0o777).toBe(0o600);
      const file = await readJson<{ kind: string; keyId: string; seed: string }>(`${name}.json`);
      expect(file.kind).toBe("failclosed/key/v1");
      expect(file.keyId).toBe(out.keyId);
    }
    const again = await cli("keys", "generate", "--out", "authority.json");
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("refusing to overwrite");
  });

  it("shows a key without its seed, and refuses an edited key file with exit 1", async () => {
    const r = await cli("keys", "show", "--key", "agent.json", "--json");
    expect(r.code).toBe(0);
    expect(json(r.stdout)).toEqual({ keyId: ids["agent"], publicKey: ids["agent"] });
    expect(r.stdout).not.toContain((await readJson<{ seed: string }>("agent.json")).seed);
    const edited = { ...(await readJson<Record<string, string>>("agent.json")), keyId: ids["mallory"], publicKey: ids["mallory"] };
    await writeFile(join(dir, "edited.json"), JSON.stringify(edited));
    const bad = await cli("keys", "show", "--key", "edited.json");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("do not match the seed");
  });

  it("issues a root artifact that verifies under the authority and binds the default policy", async () => {
    const r = await cli(
      "issue", "--authority", "authority.json", "--holder", "agent.json",
      "--actions", "transfer,read", "--resources", "payments/", "--max", "amount=5000",
      "--valid-for", "1h", "--env", "name=staging", "--gateway", "gw-1", "--reason", "pay invoices",
      "--out", "root.json", "--json",
    );
    expect(r.code, r.stderr).toBe(0);
    const chain = await readJson<SignedArtifact[]>("root.json");
    expect(chain).toHaveLength(1);
    const root = chain[0]!;
    expect(verifySigned("artifact", root, pub(ids["authority"]!))).toBe(true);
    expect(json<{ artifactId: string }>(r.stdout).artifactId).toBe(artifactId(root));
    const p = root.payload;
    expect(p.issuer).toBe(ids["authority"]);
    expect(p.holder).toBe(ids["agent"]);
    expect(p.depth).toBe(0);
    expect(p.scope).toEqual({ actions: ["transfer", "read"], resources: ["payments/"], constraints: { amount: { max: 5000 } } });
    expect(p.bindings).toEqual({ gateways: ["gw-1"], environment: { name: "staging" } });
    expect(p.policy).toEqual({ id: DEFAULT_POLICY.id, digest: policyDigest(DEFAULT_POLICY) });
    expect(p.validity.expiresAt - p.validity.notBefore).toBe(3_600_000);
    expect(Math.abs(p.validity.notBefore - Date.now())).toBeLessThan(60_000);
    expect(p.attribution.reason).toBe("pay invoices");
    expect(fromB64u(p.nonce, 32)).toBeDefined();
  });

  it("delegates a narrower artifact, signed by the parent's holder", async () => {
    const r = await cli("delegate", "--parent", "root.json", "--key", "agent.json", "--holder", ids["helper"]!, "--max", "amount=1000", "--valid-for", "30m", "--out", "child.json");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^depth\s+1$/m);
    const chain = await readJson<SignedArtifact[]>("child.json");
    expect(chain).toHaveLength(2);
    const [root, child] = [chain[0]!, chain[1]!];
    expect(root).toEqual((await readJson<SignedArtifact[]>("root.json"))[0]);
    expect(verifySigned("artifact", child, pub(ids["agent"]!))).toBe(true);
    expect(verifySigned("artifact", child, pub(ids["authority"]!))).toBe(false);
    expect(child.payload).toMatchObject({ issuer: ids["agent"], holder: ids["helper"], parent: artifactId(root), depth: 1 });
    expect(child.payload.scope.constraints).toEqual({ amount: { max: 1000 } });
    expect(child.payload.bindings).toEqual(root.payload.bindings);
    expect(wideningReason(root.payload, child.payload)).toBeUndefined();
    expect(child.payload.nonce).not.toBe(root.payload.nonce);
  });

  it("refuses a widening delegation with the reason and exit 2", async () => {
    const wider = await cli("delegate", "--parent", "root.json", "--key", "agent.json", "--holder", ids["helper"]!, "--max", "amount=9000", "--out", "wide.json");
    expect(wider.code).toBe(2);
    expect(wider.stderr).toContain('constraint on "amount" loosened or dropped');
    expect(existsSync(join(dir, "wide.json"))).toBe(false);
    const moreActions = await cli("delegate", "--parent", "root.json", "--key", "agent.json", "--holder", ids["helper"]!, "--actions", "transfer,delete");
    expect(moreActions.code).toBe(2);
    expect(moreActions.stderr).toContain('action "delete" not in parent scope');
    const longer = await cli("delegate", "--parent", "root.json", "--key", "agent.json", "--holder", ids["helper"]!, "--valid-for", "3h");
    expect(longer.code).toBe(2);
    expect(longer.stderr).toContain("validity window wider");
    const notHolder = await cli("delegate", "--parent", "root.json", "--key", "mallory.json", "--holder", ids["mallory"]!);
    expect(notHolder.code).toBe(2);
    expect(notHolder.stderr).toContain("signer is not the parent's holder");
  });

  it("refuses to delegate from a tampered parent (exit 1)", async () => {
    const chain = await readJson<SignedArtifact[]>("root.json");
    chain[0]!.payload.scope.constraints = { amount: { max: 5_000_000 } };
    await writeFile(join(dir, "tampered.json"), JSON.stringify(chain));
    const r = await cli("delegate", "--parent", "tampered.json", "--key", "agent.json", "--holder", ids["helper"]!);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("signature does not verify");
  });

  it("signs revocations of an artifact and of a key", async () => {
    const r = await cli("revoke", "--authority", "authority.json", "--artifact", "root.json", "--reason", "leaked", "--out", "rev.json");
    expect(r.code, r.stderr).toBe(0);
    const rev = await readJson<SignedRevocation>("rev.json");
    expect(verifySigned("revocation", rev, pub(ids["authority"]!))).toBe(true);
    expect(verifySigned("artifact", rev, pub(ids["authority"]!))).toBe(false); // domain separation
    const root = (await readJson<SignedArtifact[]>("root.json"))[0]!;
    expect(rev.payload).toMatchObject({ kind: "failclosed/revocation/v1", issuer: ids["authority"], target: { type: "artifact", id: artifactId(root) }, reason: "leaked" });
    const byKey = await cli("revoke", "--authority", "authority.json", "--key", ids["mallory"]!, "--reason", "compromised");
    expect(byKey.code).toBe(0);
    const signed = json<SignedRevocation>(byKey.stdout);
    expect(signed.payload.target).toEqual({ type: "key", keyId: ids["mallory"] });
    expect(verifySigned("revocation", signed, pub(ids["authority"]!))).toBe(true);
  });
});

describe("usage errors exit 2", () => {
  it.concurrent.each([
    [["no-such-command"], "unknown command"],
    [["issue", "--authority", "authority.json"], "required option"],
    [["issue", "--authority", "authority.json", "--holder", "agent.json", "--actions", "read", "--resources", "r/", "--valid-for", "1 hour"], "expected a duration"],
    [["issue", "--authority", "nope.json", "--holder", "agent.json", "--actions", "read", "--resources", "r/", "--valid-for", "1h"], "cannot read key file"],
    [["issue", "--authority", "authority.json", "--holder", "not-a-key", "--actions", "read", "--resources", "r/", "--valid-for", "1h"], "neither a key id"],
    [["revoke", "--authority", "authority.json", "--reason", "x"], "needs --artifact or --key"],
    [["revoke", "--authority", "authority.json", "--artifact", "root.json", "--key", "agent.json", "--reason", "x"], "cannot be used with"],
    [["policy", "digest", "missing.json"], "cannot read policy document"],
  ])("%j", async (args, message) => {
    const r = await cli(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it("--help documents the exit codes and exits 0", async () => {
    const r = await cli("--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Exit codes:\n\s+0\s+success\n\s+1\s+a check failed/);
    for (const c of ["keys", "policy", "issue", "delegate", "revoke", "simulate", "gateway", "audit"]) expect(r.stdout).toContain(c);
  });
});

describe("policy", () => {
  it("prints the default policy's digest, and a document file's", async () => {
    const show = await cli("policy", "show", "--json");
    expect(show.code).toBe(0);
    expect(json<{ digest: string }>(show.stdout).digest).toBe(policyDigest(DEFAULT_POLICY));
    const doc = { ...DEFAULT_POLICY, version: "2" };
    await writeFile(join(dir, "policy.json"), JSON.stringify(doc));
    const digest = await cli("policy", "digest", "policy.json");
    expect(digest.stdout.trim()).toBe(policyDigest(doc));
  });
});

describe("simulate", () => {
  it("validates the shipped scenarios", async () => {
    const r = await cli("simulate", "--validate", "--json", join(ROOT, "scenarios"));
    expect(r.code, r.stderr).toBe(0);
    expect(json<{ scenarios: unknown[] }>(r.stdout).scenarios.length).toBeGreaterThanOrEqual(20);
  });

  it("reports a broken scenario file with file:line and exits 2", async () => {
    await writeFile(join(dir, "broken.yaml"), "name: broken\ndescription: a scenario with a typo in it\nagents: [{ name: a }]\nsteps:\n  - { tsak: t1 }\n");
    const r = await cli("simulate", "broken.yaml");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("broken.yaml:5: steps[0]: a step needs one of: task");
  });

  it("simulate runs a scenario file through the engine and exits 0 when it passes", async () => {
    const r = await cli("simulate", join(ROOT, "scenarios/02-happy-treasury-transfer.yaml"), "--json");
    expect(r.code, r.stderr).toBe(0);
    const report = json<{ scenarios: { name: string; status: string }[] }>(r.stdout);
    expect(report.scenarios).toEqual([expect.objectContaining({ name: "happy-treasury-transfer", status: "pass" })]);
  });
});

describe("bin/failclosed.mjs", () => {
  it("runs the CLI through tsx", async () => {
    const r = await run(["policy", "show", "--json"], dir, [join(ROOT, "bin/failclosed.mjs")]);
    expect(r.code, r.stderr).toBe(0);
    expect(json<{ digest: string }>(r.stdout).digest).toBe(policyDigest(DEFAULT_POLICY));
  });
});
