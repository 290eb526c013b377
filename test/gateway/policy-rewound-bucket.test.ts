// Found by review (critical): a daemon learnt a `--once` publish with its key only from its KV watch
// and a history read at each heartbeat. A bucket deleted and made again silences the watch; an
// attacker who reacts to the one-shot's put (deletes the message, puts P1 back) and deletes the
// one-shot's single heartbeat left the daemon announcing P1's version for good, and a fresh gateway
// took the retired P1 and allowed a task under it. Authority processes now tell each other (and
// their peers) of each activation they write, signed, on core NATS (SUBJECTS.policyActivation).
import { afterEach, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { jetstreamManager } from "@nats-io/jetstream";
import { KV_BUCKETS, POLICY_KEY, STREAMS, SUBJECTS } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import type { PolicyDocument } from "../../src/policy/policy-document.ts";
import { readPolicyEntry } from "../../src/policy/activation.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";
import { sleep, transfer, grantFrom } from "../gateway/client-support.ts";

const P1 = DEFAULT_POLICY;
const P2: PolicyDocument = { ...DEFAULT_POLICY, id: "default-2", version: "2" };

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe("daemon's watch silenced, one-shot's entry flushed before the next history read", () => {
  it("a fresh gateway must not run a task under the retired P1", async () => {
    h = await startHarness({ gateways: 0, heartbeatMs: 1_000 }); // the CLI default interval
    const nc = h.runtime.nc;
    const jsm = await jetstreamManager(nc);
    const kvm = new Kvm(nc);
    let kv = await kvm.open(KV_BUCKETS.policy);
    const e1 = (await kv.get(POLICY_KEY))!.value; // P1, signed by the daemon's key
    const v1 = (readPolicyEntry(e1) as { ok: true; entry: { activation: { payload: { version: number } } } }).entry.activation.payload.version;
    const taskId = newTaskId();
    const artifact = await grantFrom(h.authority, taskId, P1);

    // Attacker, step 1: the same P1 entry put again a few times (a no-op for everyone), then the
    // bucket deleted and made again with P1's entry: the daemon's watch goes quiet.
    for (let i = 0; i < 20; i++) await kv.put(POLICY_KEY, e1);
    await sleep(200);
    await jsm.streams.delete(`KV_${KV_BUCKETS.policy}`);
    kv = await kvm.create(KV_BUCKETS.policy, { history: 5 });
    await kv.put(POLICY_KEY, e1);

    // Attacker, step 2: react to every policy put that is not P1's entry: delete it, put P1 back.
    const sub = nc.subscribe(`$KV.${KV_BUCKETS.policy}.${POLICY_KEY}`);
    void (async () => {
      for await (const m of sub) {
        const r = readPolicyEntry(m.data);
        if (!r.ok || r.entry.activation.payload.version === v1) continue;
        const info = await jsm.streams.info(`KV_${KV_BUCKETS.policy}`);
        for (let s = info.state.first_seq; s <= info.state.last_seq; s++) {
          const x = await jsm.streams.getMessage(`KV_${KV_BUCKETS.policy}`, { seq: s }).catch(() => null);
          const rx = x ? readPolicyEntry(x.data) : undefined;
          if (rx?.ok && rx.entry.activation.payload.version !== v1) await jsm.streams.deleteMessage(`KV_${KV_BUCKETS.policy}`, s, false);
        }
        await kv.put(POLICY_KEY, e1);
      }
    })();

    // The operator retires P1: `failclosed authority --once --policy P2` with the daemon's key.
    const once = await Authority.connect({ natsUrl: h.url, key: namedKey("authority") });
    await once.publishPolicy(P2);
    const v2 = once.policyVersion;
    await once.heartbeat();
    await once.close();
    // Attacker, step 3: the one-shot's single heartbeat deleted.
    await sleep(50);
    const gov = await jsm.streams.info(STREAMS.gov);
    for (let s = gov.state.first_seq; s <= gov.state.last_seq; s++) {
      const m = await jsm.streams.getMessage(STREAMS.gov, { seq: s }).catch(() => null);
      if (m?.subject !== SUBJECTS.heartbeat) continue;
      const p = (JSON.parse(new TextDecoder().decode(m.data)) as { payload: { policyVersion?: number } }).payload;
      if ((p.policyVersion ?? 0) >= v2) await jsm.streams.deleteMessage(STREAMS.gov, s, false);
    }
    await sleep(2_500); // the daemon heartbeats twice more, reading the bucket's history each time
    sub.unsubscribe();

    const gw = await h.startGateway();
    gw.registerAction("transfer", () => ({ ok: true }));
    expect(h.authority.policyVersion).toBe(v2); // told by the one-shot directly
    const o = await transfer(h, taskId, artifact);
    expect(o).toMatchObject({ status: "denied", codes: ["GOVERNANCE_UNAVAILABLE"] });
  });
});
