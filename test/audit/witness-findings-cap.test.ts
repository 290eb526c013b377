// A witness's findings are bounded as replay's divergences are: anyone who may publish on the
// checkpoint subject adds a finding per message, so past the first KEPT_PER_KIND of a kind they
// are counted, not listed. Every FORK stays listed whatever the number: it is the evidence.
import { expect, it } from "vitest";
import { KEPT_PER_KIND } from "../../src/audit/divergences.ts";
import { witness, witnessMerge, type WitnessInput } from "../../src/audit/witness.ts";
import { toB64u } from "../../src/crypto/base64url.ts";
import { signPayload } from "../../src/crypto/signing.ts";
import { namedKey } from "../../src/testkit/world.ts";

const GW = namedKey("gateway-1");
const ROGUE = namedKey("rogue");
const enc = new TextEncoder();
const root = (n: number): string => toB64u(new Uint8Array(32).fill(n % 256));
const cp = (size: number, r: number, key = GW) => signPayload("checkpoint", { kind: "failclosed/checkpoint/v1" as const, origin: "gw-1", size, root: root(r), time: 1_700_000_000_000 + size }, key);

it("past KEPT_PER_KIND of a kind, findings are counted, not listed; every FORK is listed", () => {
  const incoming: WitnessInput[] = [];
  let seq = 0;
  const push = (v: unknown): void => void incoming.push({ bytes: enc.encode(typeof v === "string" ? v : JSON.stringify(v)), streamSeq: ++seq });
  const junk = KEPT_PER_KIND + 500;
  for (let i = 0; i < junk; i++) push(`{not json ${i}`);
  for (let i = 0; i < KEPT_PER_KIND + 1; i++) push(cp(i + 1, 1, ROGUE));
  // A genuine history, then 1,200 other roots for its sizes, signed by the gateway key: forks.
  const forks = KEPT_PER_KIND + 200;
  for (let size = 1; size <= forks; size++) push(cp(size, 1));
  for (let size = 1; size <= forks; size++) push(cp(size, 2));

  const r = witness([], incoming, { origin: "gw-1", gatewayKeys: [GW.keyId] });
  const listed = (k: string): number => r.findings.filter((f) => f.kind === k).length;
  expect(listed("MALFORMED")).toBe(KEPT_PER_KIND);
  expect(listed("BAD_SIGNATURE")).toBe(KEPT_PER_KIND);
  expect(listed("FORK")).toBe(forks);
  expect(r.findingCounts).toEqual({ total: junk + KEPT_PER_KIND + 1 + forks, omitted: 500 + 1, byKind: { MALFORMED: junk, BAD_SIGNATURE: KEPT_PER_KIND + 1, FORK: forks } });
  // The listed ones are the first found, in order.
  expect(r.findings[0]).toMatchObject({ kind: "MALFORMED", where: "stream seq 1" });
  expect(r.checkpoints).toHaveLength(forks);
});

it("checked one message at a time (witnessMerge, as the CLI reads) gives exactly witness()'s result", () => {
  const incoming: WitnessInput[] = [cp(3, 1), "junk", cp(3, 2), cp(5, 1, ROGUE), cp(1, 1), { ...cp(2, 1), extra: 1 }].map((v, i) => ({ bytes: enc.encode(typeof v === "string" ? v : JSON.stringify(v)), streamSeq: 10 + i }));
  const held = [cp(1, 1), cp(4, 7)];
  const o = { origin: "gw-1", gatewayKeys: [GW.keyId] };
  const m = witnessMerge(held, o);
  const early = m.result(); // a result taken part-way is a copy: later messages do not change it
  for (const x of incoming) m.add(x);
  expect(m.result()).toEqual(witness(held, incoming, o));
  expect(early.findings).toEqual([]);
  expect(early.checkpoints.map((c) => c.payload.size)).toEqual([1, 4]);
});
