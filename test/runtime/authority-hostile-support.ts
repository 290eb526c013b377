// Shared by the authority-hostile suites: a real nats-server with the harness's authority
// (heartbeating every 200 ms) and one gateway, raw attacker publishes on what the authority reads,
// a record of every heartbeat the authority ever signed (it trims each one from the stream once the
// next lands, so the stream alone would hide a bad one), and the checks every test ends with: the
// authority still heartbeats, announces only what it activated and published, and a valid task runs.
import { afterEach, expect } from "vitest";
import { jetstream, jetstreamManager, type PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders, type Subscription } from "@nats-io/transport-node";
import type { HeartbeatPayload } from "../../src/core/types.ts";
import type { Gateway } from "../../src/gateway/gateway.ts";
import { STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { grantRoot, transfer } from "../gateway/client-support.ts";

export const authorityKey = namedKey("authority");
export const rogue = namedKey("rogue-authority");
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

export interface World {
  h: Harness;
  gw: Gateway;
  ran: string[];
  /** Every heartbeat signed by the harness authority's key since the world started, in arrival order. */
  heartbeats: HeartbeatPayload[];
}

/** Wait (polling) for `what`; returns whether it held within `ms`. */
export async function eventually(what: () => boolean | Promise<boolean>, ms = 5_000): Promise<boolean> {
  for (let i = 0; i < ms / 25; i++) {
    if (await what()) return true;
    await sleep(25);
  }
  return what();
}

/** A world per test (closed after it). */
export function worldPerTest(): (o?: { gateway?: Parameters<Harness["startGateway"]>[0] }) => Promise<World> {
  let w: World | undefined;
  let sub: Subscription | undefined;
  afterEach(async () => {
    sub?.unsubscribe();
    await w?.h.close();
    w = undefined;
  });
  return async (o = {}) => {
    const h = await startHarness({ gateways: 0, heartbeatMs: 200 });
    const heartbeats: HeartbeatPayload[] = [];
    sub = h.runtime.nc.subscribe(SUBJECTS.heartbeat, {
      callback: (_e, m) => {
        try {
          const hb = JSON.parse(new TextDecoder().decode(m.data)) as { payload?: HeartbeatPayload };
          if (hb.payload?.issuer === authorityKey.keyId && typeof hb.payload.seq === "number") heartbeats.push(hb.payload);
        } catch {
          // the attacker's junk on the same subject
        }
      },
    });
    await h.runtime.nc.flush();
    const gw = await h.startGateway({ policyRecheckMs: 500, ...o.gateway });
    const ran: string[] = [];
    gw.registerAction("transfer", ({ taskId }) => {
      ran.push(taskId);
      return { ok: true };
    });
    w = { h, gw, ran, heartbeats };
    return w;
  };
}

/** Publish raw bytes on a stream subject (JetStream); the ack, or the error the server gave. */
export async function publishRaw(w: World, subject: string, data: Uint8Array | string, hdrs?: Record<string, string>): Promise<PubAck | Error> {
  const h = hdrs === undefined ? undefined : natsHeaders();
  for (const [k, v] of Object.entries(hdrs ?? {})) h!.set(k, v);
  try {
    return await jetstream(w.h.runtime.nc).publish(subject, typeof data === "string" ? enc(data) : data, h !== undefined ? { headers: h } : {});
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

/** Publish raw bytes on a core NATS subject and flush. */
export async function publishCore(w: World, subject: string, data: Uint8Array | string): Promise<void> {
  w.h.runtime.nc.publish(subject, typeof data === "string" ? enc(data) : data);
  await w.h.runtime.nc.flush();
}

/** A valid task, granted now by the harness authority: allowed and run once. */
export async function expectValidTaskRuns(w: World, why = "valid task"): Promise<void> {
  const taskId = newTaskId();
  const o = await transfer(w.h, taskId, await grantRoot(w.h, taskId));
  expect(o, `${why}: ${JSON.stringify(o.codes)}`).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(w.ran.filter((t) => t === taskId)).toHaveLength(1);
}

/**
 * The authority is still honest after the hostile input: it has heartbeated since (more than
 * twice), every heartbeat it ever signed announced at most `policyVersion` and exactly `revocations`
 * (the last ones: exactly `policyVersion`), and its own view agrees.
 */
export async function expectAuthorityHonest(w: World, o: { policyVersion: number; revocations: number }): Promise<void> {
  const before = w.heartbeats.length;
  expect(await eventually(() => w.heartbeats.length >= before + 3, 10_000), "the authority keeps heartbeating").toBe(true);
  expect(w.h.authority.policyVersion).toBe(o.policyVersion);
  expect(w.h.authority.revocationsPublished).toBe(o.revocations);
  const tooHigh = w.heartbeats.filter((hb) => (hb.policyVersion ?? 0) > o.policyVersion);
  expect(tooHigh.map((hb) => hb.policyVersion), "no heartbeat announced a version above the one activated").toEqual([]);
  const last = w.heartbeats[w.heartbeats.length - 1]!;
  expect(last.policyVersion).toBe(o.policyVersion);
  expect(last.revocations).toBe(o.revocations);
}

/** How many messages FAILCLOSED_GOV holds on `subject`. */
export async function heldOn(w: World, subject: string): Promise<number> {
  const jsm = await jetstreamManager(w.h.runtime.nc);
  const info = await jsm.streams.info(STREAMS.gov, { subjects_filter: subject });
  return info.state.subjects?.[subject] ?? 0;
}
