// With --json, a command that fails still answers on stdout: one JSON object `{"error": {code,
// message, details?}}` (and the usual line on stderr, and the same exit code). Without --json,
// stdout stays empty on failure. `audit checkpoints --json` says for every checkpoint whether its
// signature was checked (`signatureOk: null` without --gateway-key).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditStore } from "../../src/audit/store.ts";
import { GATEWAY_KEY, ROGUE_KEY, outcomeEntry, storeOptions } from "../audit/support.ts";
import { cli, type Ran } from "./support.ts";

type JsonError = { error: { code: string; message: string; details?: string[] } };

function jsonError(r: Ran): JsonError["error"] {
  const lines = r.out.trim().split("\n");
  expect(lines, r.out).toHaveLength(1);
  const parsed = JSON.parse(lines[0] ?? "") as JsonError;
  expect(typeof parsed.error.code).toBe("string");
  expect(typeof parsed.error.message).toBe("string");
  return parsed.error;
}

let dir: string;
const p = (f: string): string => join(dir, f);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "fc-json-errors-"));
  await writeFile(p("bad.yaml"), "nope: [\n");
  await writeFile(p("also-bad.yaml"), "name: x\nsteps: 3\n");
  await writeFile(p("not-a-key.json"), "{}");
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("--json failures answer on stdout", () => {
  it("simulate --validate --json lists every invalid file in details, exit 2", async () => {
    const r = await cli("simulate", "--validate", "--json", p("bad.yaml"), p("also-bad.yaml"));
    expect(r.code).toBe(2);
    const e = jsonError(r);
    expect(e.code).toBe("INVALID_INPUT");
    expect(e.details).toHaveLength(2);
    expect(e.details?.[0]).toContain("bad.yaml");
    expect(e.details?.[1]).toContain("also-bad.yaml");
    expect(r.err).toContain("invalid scenarios");
  });

  it("the same without --json prints nothing on stdout", async () => {
    const r = await cli("simulate", "--validate", p("bad.yaml"));
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toContain("bad.yaml");
  });

  it("keys show --json with a file that is not a key", async () => {
    const r = await cli("keys", "show", "--key", p("not-a-key.json"), "--json");
    expect(r.code).toBe(2);
    expect(jsonError(r).code).toBe("INVALID_INPUT");
  });

  it("keys show --json with a missing file is IO", async () => {
    const r = await cli("keys", "show", "--key", p("missing.json"), "--json");
    expect(r.code).toBe(2);
    expect(jsonError(r).code).toBe("IO");
  });

  it("an unknown option with --json is USAGE", async () => {
    const r = await cli("keys", "show", "--json", "--no-such-option");
    expect(r.code).toBe(2);
    expect(jsonError(r).code).toBe("USAGE");
  });

  it("a --json that is another option's value is not the flag", async () => {
    const r = await cli("keys", "show", "--key", "--json");
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toContain("--json");
  });

  it("a --json after -- is an argument, not the flag", async () => {
    const r = await cli("simulate", "--validate", "--", p("bad.yaml"), "--json");
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
  });

  it("audit --json on a path with no log gives the store's code", async () => {
    const r = await cli("audit", "checkpoints", "--db", p("no-log-here"), "--json");
    expect(r.code).toBe(2);
    expect(jsonError(r).code).toBe("BACKEND_MISSING");
    const v = await cli("audit", "verify", "--db", p("no-log-here"), "--gateway-key", GATEWAY_KEY.keyId, "--authority", ROGUE_KEY.keyId, "--json");
    expect(v.code).toBe(2);
    expect(jsonError(v).code).toBe("BACKEND_MISSING");
  });

  it("audit --json with a malformed key is AUDIT_USAGE", async () => {
    const r = await cli("audit", "checkpoints", "--db", p("no-log-here"), "--gateway-key", "not-a-key", "--json");
    expect(r.code).toBe(2);
    expect(jsonError(r).code).toBe("AUDIT_USAGE");
  });
});

describe("audit checkpoints --json: signatureOk on every entry", () => {
  const db = (): string => p("log");
  beforeAll(async () => {
    const store = await AuditStore.open(db(), storeOptions({ checkpointEvery: 4 }));
    for (let i = 0; i < 10; i++) await store.append(outcomeEntry(i));
    await store.close();
  });

  type Listed = { seq: number; signatureOk: boolean | null };
  const list = (r: Ran): Listed[] => JSON.parse(r.out) as Listed[];

  it("null without --gateway-key (not checked), exit 0", async () => {
    const r = await cli("audit", "checkpoints", "--db", db(), "--json");
    expect(r.code).toBe(0);
    const l = list(r);
    expect(l.length).toBeGreaterThanOrEqual(2);
    for (const c of l) expect(c.signatureOk).toBeNull();
  });

  it("true with the signer's key, false with another (exit 1)", async () => {
    const ok = await cli("audit", "checkpoints", "--db", db(), "--json", "--gateway-key", GATEWAY_KEY.keyId);
    expect(ok.code).toBe(0);
    for (const c of list(ok)) expect(c.signatureOk).toBe(true);
    const bad = await cli("audit", "checkpoints", "--db", db(), "--json", "--gateway-key", ROGUE_KEY.keyId);
    expect(bad.code).toBe(1);
    for (const c of list(bad)) expect(c.signatureOk).toBe(false);
  });
});
