// The periodic policy re-read (beside the KV watch, which goes quiet if the bucket is re-made)
// never rolls a gateway back: a read whose answer arrives after the watch applied a newer policy
// is dropped. (At first it was applied, and the log activated P1, P2, P1.) The late answer is
// modelled by holding the gateway's get until the watch has applied the newer policy.
import { afterEach, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { KV_BUCKETS } from "../../src/nats/contract.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { policyDigest } from "../../src/policy/policy-document.ts";
import { startHarness, replayGateway, type Harness } from "../../src/testkit/harness.ts";
import { readRecords } from "../audit/tamper.ts";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let h: Harness | undefined;
let restore: (() => void) | undefined;
afterEach(async () => {
  restore?.();
  restore = undefined;
  await h?.close();
  h = undefined;
});

it("a re-read answered after the watch applied a newer policy is dropped: no rollback, P1 then P2 in the log", async () => {
  h = await startHarness({ gateway: { policyRecheckMs: 300 } });
  const gw = h.gateways[0]!;
  const p1 = policyDigest(DEFAULT_POLICY);
  expect(gw.ledger.state.policy?.digest).toBe(p1);

  // Hold the next "active" get's answer (whatever it read) until released.
  const proto = Object.getPrototypeOf(await new Kvm(h.runtime.nc).open(KV_BUCKETS.policy)) as { get: (...a: unknown[]) => Promise<unknown> };
  const orig = proto.get;
  let armed = true;
  let captured!: () => void;
  const gotOne = new Promise<void>((r) => (captured = r));
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  proto.get = async function (this: unknown, ...a: unknown[]) {
    const r = await orig.apply(this, a);
    if (armed && a[0] === "active") {
      armed = false;
      captured();
      await released;
    }
    return r;
  };
  restore = () => (proto.get = orig);

  await gotOne; // the gateway's re-read has read P1
  const doc2 = { ...DEFAULT_POLICY, id: "p2", version: "2", cedar: `@id("read")\npermit (principal, action == Action::"read", resource);` };
  const p2 = await h.authority.publishPolicy(doc2);
  for (let i = 0; i < 200 && gw.ledger.state.policy?.digest !== p2; i++) await sleep(20);
  expect(gw.ledger.state.policy?.digest).toBe(p2); // the watch delivered P2

  release(); // the re-read's (older) answer arrives
  const seen: (string | undefined)[] = [];
  for (let i = 0; i < 10; i++) {
    await sleep(10);
    seen.push(gw.ledger.state.policy?.digest);
  }
  const activations = (await readRecords(gw.ledger.store.backend))
    .filter((r) => r.type === "trust" && (r as { change?: { op?: string } }).change?.op === "policy.activate")
    .map((r) => ((r as { change: { policyDigest: string } }).change.policyDigest === p1 ? "P1" : "P2"));
  expect({ rolledBack: seen.includes(p1), activations }).toEqual({ rolledBack: false, activations: ["P1", "P2"] });
  expect((await replayGateway(gw)).divergences).toEqual([]);
}, 60_000);
