// An authority reads the policy bucket's history before each heartbeat. nats.js's history read
// counts the messages first and then waits for the last it counted; one deleted in between (by
// whoever has rights on the bucket) left it waiting for good, and every heartbeat after it: the
// feed went stale, and until it did, a gateway starting on the last heartbeat took a retired
// policy (found under load in policy-rewound-bucket.test.ts). Here that race is run on purpose.
import { afterEach, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { KV_BUCKETS, POLICY_KEY, STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { signActivation } from "../../src/policy/activation.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { sleep } from "./client-support.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";

/** The attacker: put the policy entry again and delete it at once, as fast as it can. */
async function startAttacker(harness: Harness): Promise<{ stop(): Promise<void> }> {
  const nc = harness.runtime.nc;
  const jsm = await jetstreamManager(nc);
  const kv = await new Kvm(nc).open(KV_BUCKETS.policy);
  const entry = (await kv.get(POLICY_KEY))!.value;
  let stop = false;
  const running = (async () => {
    while (!stop) {
      const seq = await kv.put(POLICY_KEY, entry);
      await jsm.streams.deleteMessage(`KV_${KV_BUCKETS.policy}`, seq, false).catch(() => undefined);
    }
  })();
  return {
    stop: async () => {
      stop = true;
      await running;
    },
  };
}

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("policy entries deleted while heartbeats read the bucket's history: every heartbeat still lands, each within its bound", { timeout: 60_000 }, async () => {
  h = await startHarness({ gateways: 0, heartbeatMs: 60_000 });
  const attacker = await startAttacker(h);
  let landed = 0;
  try {
    for (let i = 0; i < 10; i++) {
      // (heartbeat() resolves once the stream has acknowledged it.)
      const ok = await Promise.race([h.authority.heartbeat().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 8_000))]);
      expect(ok, `heartbeat ${i} did not land within 8 s`).toBe(true);
      landed++;
    }
  } finally {
    await attacker.stop();
  }
  expect(landed).toBe(10);
});

it("a version heard while a heartbeat reads the bucket is not lowered when the read ends (or gives up): the next heartbeat announces it", { timeout: 60_000 }, async () => {
  h = await startHarness({ gateways: 0, heartbeatMs: 60_000 });
  const attacker = await startAttacker(h);
  const jsm = await jetstreamManager(h.runtime.nc);
  const nc = h.runtime.nc;
  try {
    const higher = h.authority.policyVersion + 1_000;
    for (let round = 0; round < 3; round++) {
      const during = h.authority.heartbeat(); // its bucket read slowed (or stalled) by the attacker
      await sleep(100);
      // Another process of this key activated a newer version: it says so, signed, directly.
      const activation = signActivation(namedKey("authority"), DEFAULT_POLICY, higher + round, Date.now());
      nc.publish(SUBJECTS.policyActivation(activation.payload.issuer), JSON.stringify(activation));
      await nc.flush();
      await during;
      await h.authority.heartbeat();
      expect(h.authority.policyVersion).toBe(higher + round);
      const last = await jsm.streams.getMessage(STREAMS.gov, { last_by_subj: SUBJECTS.heartbeat });
      expect((JSON.parse(last!.string()) as { payload: { policyVersion?: number } }).payload.policyVersion).toBe(higher + round);
    }
  } finally {
    await attacker.stop();
  }
});
