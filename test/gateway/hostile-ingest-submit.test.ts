// Hostile bytes on the task work queue (failclosed.task.submit): each is denied with a stable code
// (MALFORMED for bytes that are not a submission), none runs, the gateway goes on serving valid
// tasks, and its audit log replays clean with exactly those decisions.
import { describe, expect, it } from "vitest";
import { signPayload } from "../../src/crypto/signing.ts";
import { MAX_MESSAGE_BYTES, SUBJECTS } from "../../src/nats/contract.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { originLineage } from "../../src/core/artifacts.ts";
import { transferRequest } from "./client-support.ts";
import { agent, authorityKey, expectDenied, expectLogClean, expectValidTaskRuns, hostileWorld, hpub, lastSeq, outcomeOf, publishRaw, rawProtocol, submitJunk, validSubmission } from "./hostile-ingest-support.ts";

const world = hostileWorld();

/** `text` padded with spaces inside its outer object to exactly `size` bytes (it must end with "}"). */
function padTo(text: string, size: number): string {
  const n = size - Buffer.byteLength(text);
  if (n < 0) throw new RangeError(`already ${Buffer.byteLength(text)} bytes`);
  return `${text.slice(0, -1)}${" ".repeat(n)}}`;
}

describe("hostile submissions on the work queue", () => {
  it("bytes that are not a submission are each denied MALFORMED, and a valid task still runs", async () => {
    const w = world();
    const named = newTaskId();
    const junk: [string, string | Uint8Array][] = [
      ["empty", ""],
      ["not JSON", '{"request":'],
      ["invalid UTF-8", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])],
      ["byte order mark", '\ufeff{"request":{},"args":{}}'],
      ["trailing garbage", '{"request":{},"args":{}}x'],
      ["duplicate keys", '{"request":{"payload":{},"sig":"AA"},"request":1,"args":{}}'],
      ["lone surrogate (escaped)", '{"request":{"payload":{"taskId":"\\ud800"},"sig":"AA"},"args":{}}'],
      ["lone surrogate in args", '{"request":{},"args":{"s":"\\udfff"}}'],
      ["huge number", '{"request":{},"args":{"amount":1e400}}'],
      ["unsafe integer", '{"request":{},"args":{"amount":9007199254740993}}'],
      ["underflow", '{"request":{},"args":{"amount":1e-400}}'],
      ["nesting just over the limit", `{"request":{},"args":${"[".repeat(64)}${"]".repeat(64)}}`],
      ["nesting far over (stack)", `{"request":{},"args":${"[".repeat(30_000)}${"]".repeat(30_000)}}`],
      ["__proto__ key", '{"request":{},"args":{"__proto__":{"admin":true}}}'],
      ["an array", "[]"],
      ["a string", '"submit"'],
      ["null", "null"],
      ["wrong member types", '{"request":"x","args":1}'],
      ["missing request", '{"args":{}}'],
      ["raw control character", '{"request":{},"args":{"s":"a\u0001b"}}'],
    ];
    const ids: [string, string][] = [];
    for (const [what, bytes] of junk) ids.push([what, await submitJunk(w, bytes)]);
    // Well formed JSON naming a task id, with a member too many: the task it names is denied.
    ids.push(["extra member", await submitJunk(w, JSON.stringify({ request: { payload: { taskId: named, artifactId: "x" }, sig: "x" }, args: {}, extra: 1 }), named)]);
    for (const [what, taskId] of ids) {
      const o = await expectDenied(w, taskId, "MALFORMED");
      expect(o.codes, what).toEqual(["MALFORMED"]);
    }
    await expectValidTaskRuns(w);
    await expectLogClean(w);
  });

  it("size: just under and at the 64 KiB limit are read; one byte over is refused by the stream", async () => {
    const w = world();
    // A valid submission padded with whitespace (not canonical, still I-JSON) to the limit: allowed.
    for (const size of [MAX_MESSAGE_BYTES - 1, MAX_MESSAGE_BYTES]) {
      const s = await validSubmission(w);
      await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
      const ack = await publishRaw(w, SUBJECTS.taskSubmit, padTo(s.body, size));
      expect(ack).not.toBeInstanceOf(Error);
      expect(await outcomeOf(w, s.taskId), `padded to ${size}`).toMatchObject({ verdict: "allow", status: "succeeded" });
      w.expected.set(s.taskId, { verdict: "allow" });
    }
    // Junk at exactly the limit: read, and MALFORMED.
    const head = '{"request":{},"args":"';
    const atLimit = await submitJunk(w, `${head}${"x".repeat(MAX_MESSAGE_BYTES - head.length - 2)}"}`);
    await expectDenied(w, atLimit, "MALFORMED");
    // One byte over: the stream refuses it (max_msg_size); nothing reaches a gateway.
    const s = await validSubmission(w);
    await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
    const over = await publishRaw(w, SUBJECTS.taskSubmit, padTo(s.body, MAX_MESSAGE_BYTES + 1));
    expect(over).toBeInstanceOf(Error);
    expect(await outcomeOf(w, s.taskId, 2_500)).toBeUndefined();
    await expectValidTaskRuns(w);
    await expectLogClean(w);
  });

  it("non-canonical but valid JSON (key order, whitespace, escapes, 1.0 for 1) is read as the same submission and allowed", async () => {
    const w = world();
    const s = await validSubmission(w);
    await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
    const p = s.request.payload as unknown as Record<string, unknown>;
    // Members reversed, pretty-printed, and the args' 1 written as 1.0E0; "transfer" with an escape.
    const reversed = Object.fromEntries(Object.entries(p).reverse());
    const text = `{ "args" : { "amount" : 1.0E0 } ,\n "request" : { "sig" : "${s.request.sig}", "payload" : ${JSON.stringify(reversed, null, 1).replace('"transfer"', '"tr\\u0061nsfer"')} } }`;
    await publishRaw(w, SUBJECTS.taskSubmit, text);
    expect(await outcomeOf(w, s.taskId)).toMatchObject({ verdict: "allow", status: "succeeded" });
    w.expected.set(s.taskId, { verdict: "allow" });
    await expectLogClean(w);
  });

  it("valid signatures over the wrong context are BAD_SIGNATURE or MALFORMED, never a run", async () => {
    const w = world();
    // The agent's own signature over its request payload, made under the artifact domain tag.
    const a = await validSubmission(w);
    await publishRaw(w, SUBJECTS.artifact(a.taskId), JSON.stringify(a.artifact));
    const asArtifact = signPayload("artifact", a.request.payload, agent);
    await publishRaw(w, SUBJECTS.taskSubmit, JSON.stringify({ request: asArtifact, args: a.args }));
    await expectDenied(w, a.taskId, "BAD_SIGNATURE");
    // Another request's signature on this request's payload.
    const b = await validSubmission(w);
    const c = await validSubmission(w);
    await publishRaw(w, SUBJECTS.artifact(b.taskId), JSON.stringify(b.artifact));
    await publishRaw(w, SUBJECTS.taskSubmit, JSON.stringify({ request: { payload: b.request.payload, sig: c.request.sig }, args: b.args }));
    await expectDenied(w, b.taskId, "BAD_SIGNATURE");
    // A signed lineage event (the authority's) submitted as the request: not a request.
    const d = await validSubmission(w);
    const lineageAsRequest = originLineage(authorityKey, { childTaskId: d.taskId, childArtifact: d.artifact, emittedAt: Date.now() });
    // (It names no task id in payload.taskId: the gateway names it by its sequence.)
    await expectDenied(w, await submitJunk(w, JSON.stringify({ request: lineageAsRequest, args: d.args })), "MALFORMED");
    // Args other than the signed ones.
    const e = await validSubmission(w);
    await publishRaw(w, SUBJECTS.artifact(e.taskId), JSON.stringify(e.artifact));
    await publishRaw(w, SUBJECTS.taskSubmit, JSON.stringify({ request: e.request, args: { amount: 4_999 } }));
    await expectDenied(w, e.taskId, "BAD_SIGNATURE");
    await expectValidTaskRuns(w);
    await expectLogClean(w);
  });

  it("evidence for another task id: a request naming task B with A's artifact is NO_ARTIFACT; A's lineage copied under B is LINEAGE_BROKEN", async () => {
    const w = world();
    const a = await validSubmission(w);
    await publishRaw(w, SUBJECTS.artifact(a.taskId), JSON.stringify(a.artifact));
    const b = newTaskId();
    const forB = transferRequest(b, a.artifact, { amount: 1 }, agent, 60_000);
    await publishRaw(w, SUBJECTS.taskSubmit, JSON.stringify({ request: forB, args: { amount: 1 } }));
    await expectDenied(w, b, "NO_ARTIFACT");
    // Now A's artifact and its origin lineage (naming A) on B's subjects.
    const c = newTaskId();
    const lineage = originLineage(authorityKey, { childTaskId: a.taskId, childArtifact: a.artifact, emittedAt: Date.now() });
    await publishRaw(w, SUBJECTS.artifact(c), JSON.stringify(a.artifact));
    await publishRaw(w, SUBJECTS.lineage(c), JSON.stringify(lineage));
    await publishRaw(w, SUBJECTS.taskSubmit, JSON.stringify({ request: transferRequest(c, a.artifact, { amount: 1 }, agent, 60_000), args: { amount: 1 } }));
    await expectDenied(w, c, "LINEAGE_BROKEN");
    // A itself still runs (its nonce was not spent by the others).
    await publishRaw(w, SUBJECTS.taskSubmit, a.body);
    expect(await outcomeOf(w, a.taskId)).toMatchObject({ verdict: "allow", status: "succeeded" });
    w.expected.set(a.taskId, { verdict: "allow" });
    await expectLogClean(w);
  });

  it("a replay of an old valid submission, byte for byte, is denied and never runs twice", async () => {
    const w = world();
    const s = await validSubmission(w);
    await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
    await publishRaw(w, SUBJECTS.taskSubmit, s.body);
    expect(await outcomeOf(w, s.taskId)).toMatchObject({ verdict: "allow", status: "succeeded" });
    // Replayed, then replayed again with its evidence too.
    await publishRaw(w, SUBJECTS.taskSubmit, s.body);
    const second = await outcomeOf(w, s.taskId, 10_000, 2);
    await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
    await publishRaw(w, SUBJECTS.taskSubmit, s.body);
    const third = await outcomeOf(w, s.taskId, 10_000, 3);
    // Without its evidence (the gateway forgot it once the task was allowed) the copy waits out
    // the evidence deadline: NO_ARTIFACT. With it, REPLAYED. A deny either way.
    expect(second?.verdict).toBe("deny");
    expect(second?.codes.some((c) => c === "NO_ARTIFACT" || c === "REPLAYED"), JSON.stringify(second?.codes)).toBe(true);
    expect(third?.verdict).toBe("deny");
    expect(third?.codes).toContain("REPLAYED");
    expect(w.ran.filter((t) => t === s.taskId)).toHaveLength(1);
    // The log's last decision for the task id is the last replay's deny.
    w.expected.set(s.taskId, { verdict: "deny", codes: ["REPLAYED"] });
    await expectLogClean(w);
  });

  it("a flood of small junk submissions (and of well-formed ones with no evidence) does not stop a valid task", async () => {
    const w = world();
    const junk: Promise<string>[] = [];
    for (let i = 0; i < 400; i++) junk.push(submitJunk(w, i % 2 === 0 ? "{" : `{"request":{"payload":{"taskId":"flood-${i}"}},"args":{}}`, i % 2 === 0 ? undefined : `flood-${i}`));
    // Well formed, naming a task and an artifact that never arrive: each waits out the evidence deadline.
    const waiting: Promise<string>[] = [];
    for (let i = 0; i < 40; i++) {
      const t = newTaskId();
      waiting.push(submitJunk(w, JSON.stringify({ request: { payload: { taskId: t, artifactId: "A".repeat(43) }, sig: "x" }, args: {} }), t));
    }
    const ids = await Promise.all(junk);
    const waitIds = await Promise.all(waiting);
    await expectValidTaskRuns(w);
    for (const t of ids) await expectDenied(w, t, "MALFORMED", 20_000);
    for (const t of waitIds) {
      const o = await outcomeOf(w, t, 20_000);
      expect(o?.verdict, t).toBe("deny");
      w.expected.set(t, { verdict: "deny" });
    }
    expect(w.gw.inFlight).toBe(0);
    await expectLogClean(w);
  }, 60_000);

  it("headers: JetStream's own (message id, expectations, rollup) act or refuse at the server; garbled header blocks never reach a task", async () => {
    const w = world();
    // A message id: the server drops a second publish with the same id as a duplicate, so a
    // junk submission sent first under an id cannot be followed by another junk one; the
    // gateway reads no header, and a valid submission without that id is untouched.
    const first = await publishRaw(w, SUBJECTS.taskSubmit, "{", { "Nats-Msg-Id": "squat" });
    expect(first).not.toBeInstanceOf(Error);
    const again = await publishRaw(w, SUBJECTS.taskSubmit, "{", { "Nats-Msg-Id": "squat" });
    expect(again).toMatchObject({ duplicate: true });
    await expectDenied(w, `malformed-${(first as { seq: number }).seq}`, "MALFORMED");
    // Expectations that do not hold, or do not parse, and a rollup: refused by the server.
    for (const h of [{ "Nats-Expected-Last-Sequence": "abc" }, { "Nats-Expected-Last-Sequence": "1" }, { "Nats-Expected-Stream": "FAILCLOSED_EVIDENCE" }, { "Nats-Rollup": "all" }, { "Nats-Expected-Last-Msg-Id": "nope" }]) {
      const s = await validSubmission(w);
      await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
      const ack = await publishRaw(w, SUBJECTS.taskSubmit, s.body, h);
      const o = await outcomeOf(w, s.taskId, ack instanceof Error ? 200 : 10_000);
      if (ack instanceof Error) expect(o, JSON.stringify(h)).toBeUndefined();
      else {
        // Stored after all (a header the server ignores): the submission is read as it is.
        expect(o, JSON.stringify(h)).toMatchObject({ verdict: "allow", status: "succeeded" });
        w.expected.set(s.taskId, { verdict: "allow" });
      }
    }
    // Long and odd, but well-formed, headers on a valid submission: ignored by the gateway.
    const long = await validSubmission(w);
    await publishRaw(w, SUBJECTS.artifact(long.taskId), JSON.stringify(long.artifact));
    expect(await publishRaw(w, SUBJECTS.taskSubmit, long.body, { "X-Junk": "x".repeat(8_000), "Nats-Msg-Id": "" })).not.toBeInstanceOf(Error);
    expect(await outcomeOf(w, long.taskId)).toMatchObject({ verdict: "allow", status: "succeeded" });
    w.expected.set(long.taskId, { verdict: "allow" });
    // Header blocks no client library would send, on a connection of our own.
    const garbled: [string, (body: string) => Buffer][] = [
      ["no NATS/1.0 line", (b) => hpub(SUBJECTS.taskSubmit, "Nats-Msg-Id: g1\r\n\r\n", b)],
      ["a header without a colon", (b) => hpub(SUBJECTS.taskSubmit, "NATS/1.0\r\nNats-Msg-Id\r\n\r\n", b)],
      ["an unterminated header block", (b) => hpub(SUBJECTS.taskSubmit, "NATS/1.0\r\nNats-Msg-Id: g3", b)],
      ["an empty message id", (b) => hpub(SUBJECTS.taskSubmit, "NATS/1.0\r\nNats-Msg-Id:\r\n\r\n", b)],
      ["a negative expected sequence", (b) => hpub(SUBJECTS.taskSubmit, "NATS/1.0\r\nNats-Expected-Last-Sequence: -1\r\n\r\n", b)],
      ["a header length that swallows the body's start", (b) => hpub(SUBJECTS.taskSubmit, "NATS/1.0\r\nX: y\r\n\r\n", b, 40)],
      ["a status line with a code", (b) => hpub(SUBJECTS.taskSubmit, "NATS/1.0 503\r\n\r\n", b)],
    ];
    for (const [what, frame] of garbled) {
      const s = await validSubmission(w);
      await publishRaw(w, SUBJECTS.artifact(s.taskId), JSON.stringify(s.artifact));
      const before = await lastSeq(w);
      await rawProtocol(w.hh.url, [frame(s.body)]);
      const stored = (await lastSeq(w)) > before;
      const o = await outcomeOf(w, s.taskId, stored ? 10_000 : 200);
      if (!stored) {
        expect(o, what).toBeUndefined();
        continue;
      }
      // Stored: decided on the body as stored (whole: allowed; cut: MALFORMED), once.
      if (o === undefined) {
        // The body's start was swallowed: no task id left to name it by.
        continue;
      }
      expect(["allow", "deny"], what).toContain(o.verdict);
      if (o.verdict === "deny") expect(o.codes, what).toEqual(["MALFORMED"]);
      w.expected.set(s.taskId, o.verdict === "allow" ? { verdict: "allow" } : { verdict: "deny", codes: ["MALFORMED"] });
    }
    expect(new Set(w.ran).size).toBe(w.ran.length);
    await expectValidTaskRuns(w);
    await expectLogClean(w);
  });
});
