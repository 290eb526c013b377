// Forged JetStream stream advisories. A gateway listens on $JS.EVENT.ADVISORY.STREAM.{DELETED,
// CREATED}.FAILCLOSED_* (follow-stream.ts) to notice at once a feed's stream deleted or made again.
// Those are plain subjects: a client with publish rights on them (any client of an account with no
// subject permissions) can send such a message for a stream that was neither deleted nor made
// again. The contract: bytes on the bus never stop a gateway serving valid tasks beyond the
// README's ⚠ notes. This suite has its own harness: a failure here leaves the gateway's feeds
// being read again, which must not spill into other suites' tests.
import { describe, expect, it } from "vitest";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { expectLogClean, expectValidTaskRuns, hostileWorld, outcomeOf, publishRaw, sleep, validSubmission } from "./hostile-ingest-support.ts";

const world = hostileWorld();

describe("hostile stream advisories", () => {
  it("forged JetStream stream advisories (anyone may publish $JS.EVENT.ADVISORY.STREAM.*) do not make the gateway drop its governance feed", async () => {
    const w = world();
    await expectValidTaskRuns(w);
    const warned = w.hh.warnings.length;
    // Neither stream was deleted or made again: these are bytes anyone on the bus can send.
    w.hh.runtime.nc.publish("$JS.EVENT.ADVISORY.STREAM.DELETED.FAILCLOSED_GOV", "{}");
    await w.hh.runtime.nc.flush();
    // The gateway must not take them for the stream being replaced: no read of a feed begun again.
    const rereads = () => w.hh.warnings.slice(warned).filter((m) => /reading FAILCLOSED_(GOV|EVIDENCE) again from its first message/.test(m));
    for (let i = 0; i < 100 && rereads().length === 0; i++) await sleep(20);
    expect.soft(rereads()).toEqual([]);
    // A flood of them while valid tasks are decided: each task must still be allowed.
    let flooding = true;
    const flood = (async () => {
      while (flooding) {
        w.hh.runtime.nc.publish("$JS.EVENT.ADVISORY.STREAM.DELETED.FAILCLOSED_GOV", "{}");
        w.hh.runtime.nc.publish("$JS.EVENT.ADVISORY.STREAM.CREATED.FAILCLOSED_EVIDENCE", "{}");
        await sleep(50);
      }
    })();
    const outcomes: { taskId: string; verdict: string | undefined; codes: string[] | undefined }[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        const s = await validSubmission(w);
        await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
        await publishRaw(w, SUBJECTS.taskSubmit, s.body);
        const o = await outcomeOf(w, s.taskId);
        outcomes.push({ taskId: s.taskId, verdict: o?.verdict, codes: o?.codes });
      }
    } finally {
      flooding = false;
      await flood;
    }
    for (const o of outcomes) w.expected.set(o.taskId, o.verdict === "allow" ? { verdict: "allow" } : { verdict: "deny" });
    // Every one of them allowed (found: denied GOVERNANCE_UNAVAILABLE while the forged advisory
    // had the gateway read its governance stream again from the first message).
    expect(outcomes.map((o) => `${o.verdict ?? "none"} ${(o.codes ?? []).join(",")}`)).toEqual(outcomes.map(() => "allow "));
    expect(rereads()).toEqual([]);
    await expectLogClean(w);
  }, 60_000);
});
