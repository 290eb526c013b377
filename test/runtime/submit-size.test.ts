// A submission over the wire limit is refused before anything is published, and a submit the
// server refuses without storing it is a definitive deny: neither can ever run, so neither is
// "unknown" (which would tell the caller it may have run).
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { signRequest } from "../../src/core/artifacts.ts";
import type { SignedArtifact } from "../../src/core/types.ts";
import { MAX_MESSAGE_BYTES, STREAMS } from "../../src/nats/contract.ts";
import { submitTask } from "../../src/runtime/client.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { agent, runtimeWorld, type RuntimeWorld } from "./support.ts";

const bytes = (s: string): number => Buffer.byteLength(s, "utf8");

describe("submission size", () => {
  let w: RuntimeWorld;
  let ran: string[];
  beforeAll(async () => {
    w = await runtimeWorld();
    ran = [];
    w.rt.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  });
  afterAll(async () => {
    await w.close();
  });

  /** Subjects published under failclosed.evidence.<taskId>.> or on the submit subject while `fn` runs. */
  async function published(taskId: string, fn: () => Promise<void>): Promise<string[]> {
    const seen: string[] = [];
    const nc = w.h.runtime.nc;
    const subs = [nc.subscribe(`failclosed.evidence.${taskId}.>`, { callback: (_e, m) => void seen.push(m.subject) }), nc.subscribe("failclosed.task.submit", { callback: (_e, m) => void seen.push(`${m.subject} ${m.data.length}`) })];
    await nc.flush();
    try {
      await fn();
      // A round trip on both connections: anything published would have arrived by now.
      await w.rt.nc.flush();
      await nc.flush();
    } finally {
      for (const s of subs) s.unsubscribe();
    }
    return seen;
  }

  /** A signed request and args whose submit message is exactly `size` bytes. */
  function submissionOfSize(taskId: string, artifact: SignedArtifact, size: number): { request: ReturnType<typeof signRequest>; args: JsonValue } {
    const make = (n: number) => {
      const args = { amount: 1, blob: "x".repeat(n) };
      const now = Date.now();
      const request = signRequest(agent, { taskId, action: "transfer", resource: "payments/t", args, artifact, createdAt: now, notAfter: now + 10_000 });
      return { request, args, size: bytes(JSON.stringify({ request, args })) };
    };
    const probe = make(1_000);
    const exact = make(1_000 + size - probe.size);
    expect(exact.size).toBe(size);
    return exact;
  }

  it("spawn with args over the message limit: a MALFORMED deny, status denied, and nothing published", async () => {
    const taskId = newTaskId();
    const art = await w.grant(taskId);
    let out: Awaited<ReturnType<typeof submitTask>> | undefined;
    const seen = await published(taskId, async () => {
      out = await w.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1, blob: "x".repeat(70_000) }, chain: [art], taskId }).outcome;
    });
    expect(out).toMatchObject({ taskId, gatewayId: "client", verdict: "deny", codes: ["MALFORMED"], status: "denied" });
    expect(out?.detail).toMatch(/over the 65536-byte message limit; nothing was published/);
    expect(seen).toEqual([]);
    expect(ran).not.toContain(taskId);
  });

  it("one byte over the limit is refused up front; exactly at the limit reaches the gateway", async () => {
    const over = newTaskId();
    const overSub = submissionOfSize(over, await w.grant(over), MAX_MESSAGE_BYTES + 1);
    let o1: Awaited<ReturnType<typeof submitTask>> | undefined;
    const seen = await published(over, async () => {
      o1 = await submitTask(w.rt.nc, { ...overSub, chain: [], timeoutMs: 10_000, skewMs: 500 });
    });
    expect(o1).toMatchObject({ gatewayId: "client", codes: ["MALFORMED"], status: "denied" });
    expect(seen).toEqual([]);

    const at = newTaskId();
    const art = await w.grant(at);
    const atSub = submissionOfSize(at, art, MAX_MESSAGE_BYTES);
    const o2 = await submitTask(w.rt.nc, { ...atSub, chain: [art], timeoutMs: 10_000, skewMs: 500, gatewayKeys: new Set([w.rt.gateway!.keyId]) });
    expect(o2.gatewayId).toBe("rt-gw");
    expect(o2.status).toBe("succeeded");
    expect(ran).toContain(at);
  });

  it("evidence over the message limit is refused up front too", async () => {
    const taskId = newTaskId();
    const art = await w.grant(taskId);
    const fat = { ...art, payload: { ...art.payload, attribution: { ...art.payload.attribution, reason: "y".repeat(MAX_MESSAGE_BYTES) } } } as SignedArtifact;
    let out: Awaited<ReturnType<typeof submitTask>> | undefined;
    const seen = await published(taskId, async () => {
      out = await w.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1 }, chain: [fat, art], taskId }).outcome;
    });
    expect(out).toMatchObject({ gatewayId: "client", codes: ["MALFORMED"], status: "denied" });
    expect(out?.detail).toMatch(/evidence message 0 \(artifact\)/);
    expect(seen).toEqual([]);
  });

  it("a submit the server refuses as too large for the stream (nothing stored) is a definitive MALFORMED deny, not unknown", async () => {
    // The stream's own cap below the contract's: the client's check passes, the server refuses.
    const jsm = await jetstreamManager(w.h.runtime.nc);
    const { config } = await jsm.streams.info(STREAMS.tasks);
    await jsm.streams.update(STREAMS.tasks, { ...config, max_msg_size: 2_048 });
    try {
      const taskId = newTaskId();
      const before = (await jsm.streams.info(STREAMS.tasks)).state.last_seq;
      const out = await w.rt.spawn({ agent, action: "transfer", resource: "payments/t", args: { amount: 1, blob: "x".repeat(4_000) }, chain: [await w.grant(taskId)], taskId }).outcome;
      expect(out).toMatchObject({ taskId, gatewayId: "client", verdict: "deny", codes: ["MALFORMED"], status: "denied" });
      expect(out.detail).toMatch(/refused the submit message as too large/);
      expect((await jsm.streams.info(STREAMS.tasks)).state.last_seq).toBe(before);
      expect(ran).not.toContain(taskId);
    } finally {
      await jsm.streams.update(STREAMS.tasks, config);
    }
  });
});
