// Operator mistakes get a clear one-line message and exit 2, never a stack trace; and `issue`
// never exits 0 with an artifact its own tools (and every gateway) would refuse.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { check, signedArtifactSchema } from "../../src/core/schema.ts";
import { cli, type Ran } from "./support.ts";

let dir: string;
const p = (f: string): string => join(dir, f);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "failclosed-"));
  expect((await cli("keys", "generate", "--out", p("authority.json"))).code).toBe(0);
  expect((await cli("keys", "generate", "--out", p("agent.json"))).code).toBe(0);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const noStack = (r: Ran): void => {
  expect(r.err).not.toContain("internal error");
  expect(r.err).not.toMatch(/\n\s+at /);
};

describe("gateway: operator mistakes are usage errors, not internal errors", () => {
  it("no trusted authority (the docker-compose gateway as shipped)", async () => {
    const saved = process.env["FAILCLOSED_AUTHORITIES"];
    delete process.env["FAILCLOSED_AUTHORITIES"];
    try {
      const r = await cli("gateway", "--nats", "nats://127.0.0.1:1", "--data", p("gw-noauth"));
      expect(r.code).toBe(2);
      noStack(r);
    } finally {
      if (saved !== undefined) process.env["FAILCLOSED_AUTHORITIES"] = saved;
    }
  });

  it("--key that does not exist", async () => {
    const keyId = JSON.parse(await readFile(p("authority.json"), "utf8")).keyId as string;
    const r = await cli("gateway", "--nats", "nats://127.0.0.1:1", "--data", p("gw-nokey"), "--authority", keyId, "--key", p("missing.json"));
    expect(r.code).toBe(2);
    noStack(r);
  });
});

describe("issue: exit 0 only for an artifact the runtime accepts", () => {
  const base = (): string[] => ["issue", "--authority", p("authority.json"), "--holder", p("agent.json"), "--actions", "read", "--resources", "r/", "--valid-for", "1h"];

  for (const [name, extra] of [
    ["--nonce short", ["--nonce", "short"]],
    ["--code-digest notadigest", ["--code-digest", "notadigest"]],
  ] as const) {
    it(`${name}: refused, or the artifact passes the schema`, async () => {
      const r = await cli(...base(), ...extra);
      if (r.code === 0) {
        const chain = JSON.parse(r.out) as unknown[];
        const c = check(signedArtifactSchema, chain[0]);
        expect(c.ok, `issue exited 0 but its artifact is schema-invalid: ${c.ok ? "" : c.error}`).toBe(true);
      } else {
        expect(r.code).toBe(2);
      }
    });
  }

  it("--max beyond 2^53: a usage error, not a stack trace", async () => {
    const r = await cli(...base(), "--max", "amount=9007199254740993");
    expect(r.code).toBe(2);
    noStack(r);
  });

  it("--valid-for too large for a date: a usage error, not a stack trace", async () => {
    const r = await cli("issue", "--authority", p("authority.json"), "--holder", p("agent.json"), "--actions", "read", "--resources", "r/", "--valid-for", "100000000d");
    expect(r.code).toBe(2);
    noStack(r);
  });
});
