// Root task generators for the soak, each with the expected-outcome oracle written beside it:
// "must-deny" only where DESIGN.md §3 leaves no doubt that every gateway must deny, whatever
// the interleaving; "may-run" where the faults may still deny it. Generators submit and return
// at once; the client's wait is followed in the task's record (SoakWorld.follow).
import { setTimeout as sleep } from "node:timers/promises";
import { jetstream } from "@nats-io/jetstream";
import type { JsonValue } from "../../src/canonical/jcs.ts";
import { artifactId, issueArtifact, originLineage, signRequest } from "../../src/core/artifacts.ts";
import type { ArtifactBindings, SignedArtifact, SignedLineage, SignedRequest, Validity } from "../../src/core/types.ts";
import type { KeyPair } from "../../src/crypto/keys.ts";
import { SUBJECTS, submissionIdOf } from "../../src/nats/contract.ts";
import { awaitOutcome, submitTask } from "../../src/runtime/client.ts";
import { namedKey } from "../../src/testkit/world.ts";
import type { Rng } from "./prng.ts";
import { CHILD_VARIANTS, publishRaw, type SoakTimings, type SoakWorld, type TaskRecord } from "./soak-world.ts";

export const ROOT_KINDS = {
  "valid-spawn": 14,
  "valid-manual": 8,
  plan: 10,
  twin: 6,
  "copy-early": 3,
  "replay-later": 4,
  "revoked-applied": 4,
  "revoked-acked": 3,
  "revoke-mid-flight": 3,
  "revoked-key": 3,
  expired: 3,
  "not-yet-valid": 2,
  "wrong-signer": 3,
  "bad-sig": 3,
  "tampered-args": 3,
  "wrong-env": 3,
  "gateway-bound": 4,
  "no-evidence": 2,
  "no-lineage": 2,
  "untrusted-issuer": 2,
  overscope: 2,
  "nonce-other-task": 2,
  "same-nonce-two-tasks": 3,
  "same-task-two-artifacts": 3,
} as const;
export type RootKind = keyof typeof ROOT_KINDS;

export interface ScenarioContext {
  w: SoakWorld;
  t: SoakTimings;
  seed: number;
  /** Bodies of manual submissions that succeeded: material for replays. */
  replayable: { taskId: string; body: string }[];
}

const GATEWAY_KEYS = new Set(Array.from({ length: 4 }, (_, i) => namedKey(`gateway-${i + 1}`).keyId));
const ROGUE = namedKey("rogue-authority");

const validNow = (): Validity => ({ notBefore: Date.now() - 60_000, expiresAt: Date.now() + 3_600_000 });

function record(taskId: string, kind: string, expect: TaskRecord["expect"], why = "", extra: Partial<TaskRecord> = {}): TaskRecord {
  return { taskId, kind, expect, why, multiSubmission: false, notes: [], ...extra };
}

async function grant(c: ScenarioContext, taskId: string, o: { holder?: KeyPair; validity?: Validity; bindings?: ArtifactBindings; nonce?: string } = {}) {
  const nonce = o.nonce ?? c.w.nextNonce(taskId);
  const { artifact, lineage } = await c.w.h.authority.grant({
    taskId,
    holder: (o.holder ?? c.w.agents[0]!).keyId,
    scope: c.w.rootScope,
    ...(o.bindings !== undefined ? { bindings: o.bindings } : {}),
    validity: o.validity ?? validNow(),
    nonce,
    // Always the policy the run started with: a policy-flip fault must not move new grants along.
    policy: c.w.policy,
    attribution: { initiator: "soak", reason: "chaos soak" },
  });
  return { artifact, lineage, nonce };
}

/** A root artifact issued without publishing its origin lineage (the caller decides when). */
function issueWithheld(c: ScenarioContext, taskId: string, issuer: KeyPair = c.w.authorityKey): { artifact: SignedArtifact; lineage: SignedLineage; nonce: string } {
  const nonce = c.w.nextNonce(taskId);
  const artifact = issueArtifact(issuer, {
    holder: c.w.agents[0]!.keyId,
    scope: c.w.rootScope,
    validity: validNow(),
    nonce,
    policy: c.w.policy,
    attribution: { initiator: "soak", reason: "withheld lineage" },
  });
  const lineage = originLineage(issuer, { childTaskId: taskId, childArtifact: artifact, emittedAt: Date.now() });
  return { artifact, lineage, nonce };
}

function request(c: ScenarioContext, signer: KeyPair, taskId: string, artifact: SignedArtifact, args: JsonValue, action = "transfer"): SignedRequest {
  const now = Date.now();
  return signRequest(signer, { taskId, action, resource: "payments/transfer", args, artifact, createdAt: now, notAfter: now + c.t.outcomeTimeoutMs });
}

function submit(c: ScenarioContext, r: TaskRecord, s: { request: SignedRequest; args: JsonValue; chain?: SignedArtifact[]; lineage?: SignedLineage[] }) {
  r.body = JSON.stringify({ request: s.request, args: s.args });
  return c.w.follow(
    r,
    "submitTask",
    submitTask(c.w.nc, { request: s.request, args: s.args, ...(s.chain ? { chain: s.chain } : {}), ...(s.lineage ? { lineage: s.lineage } : {}), timeoutMs: c.t.outcomeTimeoutMs, skewMs: c.t.skewMs, gatewayKeys: GATEWAY_KEYS }),
  );
}

function spawn(c: ScenarioContext, r: TaskRecord, artifact: SignedArtifact, args: JsonValue, action = "transfer", agent: KeyPair = c.w.agents[0]!) {
  return c.w.follow(r, "runtime.spawn", c.w.rt.spawn({ agent, action, resource: action === "plan" ? "payments/batch" : "payments/transfer", args, chain: [artifact], taskId: r.taskId }).outcome);
}

const amount = (rng: Rng): JsonValue => ({ amount: rng.int(1, 5000), delayMs: rng.pick([0, 0, 0, 30, 250]) });

/**
 * Start one root scenario of `kind`. Resolves once it is submitted (and its follow-ups are
 * scheduled); every client wait is in the world's pending set.
 */
export async function launch(c: ScenarioContext, rng: Rng, n: number, kind: RootKind): Promise<void> {
  const { w } = c;
  const id = (suffix = "") => `s${c.seed.toString(36)}-${n}-${kind}${suffix}`;
  switch (kind) {
    case "valid-spawn": {
      const r = w.track(record(id(), kind, "may-run"));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      void spawn(c, r, artifact, amount(rng), rng.pick(["transfer", "read"]));
      return;
    }
    case "valid-manual": {
      const r = w.track(record(id(), kind, "may-run"));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      const args = amount(rng);
      void submit(c, r, { request: request(c, w.agents[0]!, r.taskId, artifact, args), args, chain: [artifact] }).then((o) => {
        if (o?.status === "succeeded") c.replayable.push({ taskId: r.taskId, body: r.body! });
      });
      return;
    }
    case "plan": {
      const variant = rng.pick(CHILD_VARIANTS);
      const r = w.track(record(id(), kind, "may-run", "", { notes: [`child ${variant}`] }));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      void spawn(c, r, artifact, { amount: 1, child: variant }, "plan");
      return;
    }
    case "twin": {
      // One submission, byte for byte, several times on the shared queue: each gateway may pull a copy.
      const r = w.track(record(id(), kind, "may-run", "", { multiSubmission: true }));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      const args = amount(rng);
      void submit(c, r, { request: request(c, w.agents[0]!, r.taskId, artifact, args), args, chain: [artifact] });
      const copies = rng.int(1, 2);
      const delays = Array.from({ length: copies }, () => rng.pick([0, 0, 20, 150, 800, 1_500]));
      for (const d of delays) {
        void (async () => {
          await sleep(d);
          await publishRaw(w, r.body!).catch((e: unknown) => r.notes.push(`copy publish failed: ${String(e)}`));
        })();
      }
      return;
    }
    case "copy-early": {
      // A copy of a submission reaches the queue before its evidence (a copier's, or one taken by
      // a gateway whose evidence read lags) while the original's client already waits: denied
      // NO_ARTIFACT once the evidence deadline passes, unless the evidence lands first. The
      // evidence and the original follow after a drawn delay, before or after that deadline.
      // Whatever the client is told must hold (INV7): "denied" never runs (found by review: the
      // copy's deny spent nothing, and the original then ran).
      const r = w.track(record(id(), kind, "may-run", "", { multiSubmission: true }));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      const args = amount(rng);
      const delay = rng.pick([0, 500, 1_500, 3_000, 4_000]);
      r.notes.push(`evidence and original ${delay} ms after the copy`);
      const req = request(c, w.agents[0]!, r.taskId, artifact, args);
      const body = JSON.stringify({ request: req, args });
      r.body = body;
      const waiter = awaitOutcome(w.nc, r.taskId, c.t.outcomeTimeoutMs, { submissionId: submissionIdOf(JSON.parse(body))!, gatewayKeys: GATEWAY_KEYS, deadline: { inMs: (req.payload.notAfter ?? 0) - req.payload.createdAt, skewMs: c.t.skewMs } });
      void w.follow(r, "submitTask", waiter.outcome);
      await waiter.ready;
      await publishRaw(w, body).catch((e: unknown) => r.notes.push(`copy publish failed: ${String(e)}`));
      void (async () => {
        await sleep(delay);
        try {
          await jetstream(w.nc).publish(SUBJECTS.artifact(r.taskId), JSON.stringify(artifact));
          await publishRaw(w, body);
        } catch (e) {
          r.notes.push(`original publish failed: ${String(e)}`);
        }
      })();
      return;
    }
    case "replay-later": {
      // A captured submission that already ran, sent again (once or to both gateways at once).
      // Both draws are made whatever is available, so the seed's sequence stays the same.
      const at = rng.next();
      const times = rng.int(1, 2);
      if (c.replayable.length === 0) return;
      const victim = c.replayable[Math.floor(at * c.replayable.length)]!;
      const r = w.tasks.get(victim.taskId)!;
      r.multiSubmission = true;
      r.notes.push(`replayed ${times}x`);
      await Promise.all(Array.from({ length: times }, () => publishRaw(w, victim.body).catch((e: unknown) => r.notes.push(`replay publish failed: ${String(e)}`))));
      return;
    }
    case "revoked-applied": {
      const r = w.track(record(id(), kind, "may-run"));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      try {
        await w.h.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "soak: revoked before submission");
        if (await w.revocationApplied(artifactId(artifact))) {
          r.expect = "must-deny";
          r.why = "REVOKED: artifact revoked and folded into every gateway's log before submission";
        } else r.notes.push("revocation not folded by every gateway in time: not held to a deny");
      } catch (e) {
        r.notes.push(`revoke failed (${String(e)}): not held to a deny`);
      }
      void spawn(c, r, artifact, amount(rng));
      return;
    }
    case "revoked-acked": {
      // Revocation acked by JetStream, task submitted at once: propagation is asynchronous
      // (README: "the same bound as any revocation's propagation"), so not held to a deny; the
      // run reports how often one ran, and replay checks each allow preceded the revocation in its log.
      const r = w.track(record(id(), kind, "may-run", "", { notes: ["revocation acked just before submission"] }));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      try {
        await w.h.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "soak: revoked just before submission");
      } catch (e) {
        r.notes.push(`revoke failed (${String(e)})`);
      }
      void spawn(c, r, artifact, amount(rng));
      return;
    }
    case "revoke-mid-flight": {
      // Submitted with its origin lineage held back; revoked while it collects; the lineage is
      // released only once every gateway has folded the revocation. Without it, it is denied
      // for want of lineage: a deny either way.
      const r = w.track(record(id(), kind, "must-deny", "REVOKED (or LINEAGE_BROKEN when the lineage is never released)"));
      const { artifact, lineage, nonce } = issueWithheld(c, r.taskId);
      r.nonce = nonce;
      const args = amount(rng);
      void submit(c, r, { request: request(c, w.agents[0]!, r.taskId, artifact, args), args, chain: [artifact] });
      void (async () => {
        await sleep(rng.int(50, 600));
        try {
          await w.h.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "soak: revoked mid-flight");
          if (await w.revocationApplied(artifactId(artifact), 3_000)) {
            await jetstream(w.nc).publish(SUBJECTS.lineage(r.taskId), JSON.stringify(lineage));
            r.notes.push("lineage released after the revocation was folded everywhere");
          } else r.notes.push("revocation not folded everywhere in time: lineage never released");
        } catch (e) {
          r.notes.push(`revoke or lineage publish failed (${String(e)}): lineage never released`);
        }
      })();
      return;
    }
    case "revoked-key": {
      // The holder's own key revoked (a key of its own, so no other task is touched).
      const victim = namedKey(`victim-${c.seed}-${n}`);
      const r = w.track(record(id(), kind, "may-run"));
      const { artifact, nonce } = await grant(c, r.taskId, { holder: victim });
      r.nonce = nonce;
      try {
        await w.h.authority.revoke({ type: "key", keyId: victim.keyId }, "soak: agent key revoked");
        if (await w.revocationApplied(victim.keyId)) {
          r.expect = "must-deny";
          r.why = "REVOKED: the holder's key was revoked and folded into every gateway's log before submission";
        } else r.notes.push("key revocation not folded by every gateway in time: not held to a deny");
      } catch (e) {
        r.notes.push(`revoke failed (${String(e)}): not held to a deny`);
      }
      void spawn(c, r, artifact, amount(rng), "transfer", victim);
      return;
    }
    case "expired":
    case "not-yet-valid": {
      const hour = 3_600_000;
      const validity = kind === "expired" ? { notBefore: Date.now() - 2 * hour, expiresAt: Date.now() - hour } : { notBefore: Date.now() + hour, expiresAt: Date.now() + 2 * hour };
      const r = w.track(record(id(), kind, "must-deny", kind === "expired" ? "EXPIRED" : "NOT_YET_VALID"));
      const { artifact, nonce } = await grant(c, r.taskId, { validity });
      r.nonce = nonce;
      void spawn(c, r, artifact, amount(rng));
      return;
    }
    case "wrong-signer": {
      const r = w.track(record(id(), kind, "must-deny", "IDENTITY_MISMATCH: request signed by a key that is not the holder's"));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      const args = amount(rng);
      void submit(c, r, { request: request(c, w.agents[1]!, r.taskId, artifact, args), args, chain: [artifact] });
      return;
    }
    case "bad-sig": {
      const r = w.track(record(id(), kind, "must-deny", "BAD_SIGNATURE: a request signature byte changed"));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      const args = amount(rng);
      const good = request(c, w.agents[0]!, r.taskId, artifact, args);
      const i = rng.int(2, 40);
      const ch = good.sig[i] === "A" ? "B" : "A";
      const bad: SignedRequest = { payload: good.payload, sig: good.sig.slice(0, i) + ch + good.sig.slice(i + 1) };
      void submit(c, r, { request: bad, args, chain: [artifact] });
      return;
    }
    case "tampered-args": {
      const r = w.track(record(id(), kind, "must-deny", "BAD_SIGNATURE: args differ from the signed argsDigest"));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      const signed = { amount: 10 };
      void submit(c, r, { request: request(c, w.agents[0]!, r.taskId, artifact, signed), args: { amount: rng.int(11, 5000) }, chain: [artifact] });
      return;
    }
    case "wrong-env": {
      const r = w.track(record(id(), kind, "must-deny", "ENVIRONMENT_MISMATCH: bound to name=production, gateways measure staging"));
      const { artifact, nonce } = await grant(c, r.taskId, { bindings: { environment: { name: "production" } } });
      r.nonce = nonce;
      void spawn(c, r, artifact, amount(rng));
      return;
    }
    case "gateway-bound": {
      const r = w.track(record(id(), kind, "may-run", "", { onlyOn: ["gw-1"] }));
      const { artifact, nonce } = await grant(c, r.taskId, { bindings: { gateways: ["gw-1"] } });
      r.nonce = nonce;
      void spawn(c, r, artifact, amount(rng));
      return;
    }
    case "no-evidence": {
      const r = w.track(record(id(), kind, "must-deny", "NO_ARTIFACT: the artifact is never published"));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      const args = amount(rng);
      void submit(c, r, { request: request(c, w.agents[0]!, r.taskId, artifact, args), args });
      return;
    }
    case "no-lineage": {
      const r = w.track(record(id(), kind, "must-deny", "LINEAGE_BROKEN: the origin lineage is never published"));
      const { artifact, nonce } = issueWithheld(c, r.taskId);
      r.nonce = nonce;
      const args = amount(rng);
      void submit(c, r, { request: request(c, w.agents[0]!, r.taskId, artifact, args), args, chain: [artifact] });
      return;
    }
    case "untrusted-issuer": {
      const r = w.track(record(id(), kind, "must-deny", "UNTRUSTED_ISSUER: root signed by a key no gateway trusts"));
      const { artifact, lineage, nonce } = issueWithheld(c, r.taskId, ROGUE);
      r.nonce = nonce;
      const args = amount(rng);
      void submit(c, r, { request: request(c, w.agents[0]!, r.taskId, artifact, args), args, chain: [artifact], lineage: [lineage] });
      return;
    }
    case "overscope": {
      const r = w.track(record(id(), kind, "must-deny", "POLICY_MISMATCH: amount over the artifact's max 5000"));
      const { artifact, nonce } = await grant(c, r.taskId);
      r.nonce = nonce;
      void spawn(c, r, artifact, { amount: rng.int(5001, 9000) });
      return;
    }
    case "nonce-other-task": {
      // A valid task A, and task B presenting A's artifact (and A's origin lineage) as its own.
      const a = w.track(record(id("-a"), kind, "may-run"));
      const { artifact, lineage, nonce } = await grant(c, a.taskId);
      a.nonce = nonce;
      const args = amount(rng);
      void submit(c, a, { request: request(c, w.agents[0]!, a.taskId, artifact, args), args, chain: [artifact] });
      await sleep(rng.pick([0, 100, 1_000]));
      const b = w.track(record(id("-b"), kind, "must-deny", "LINEAGE_BROKEN: A's artifact and lineage presented for task B", { nonce }));
      void submit(c, b, { request: request(c, w.agents[0]!, b.taskId, artifact, args), args, chain: [artifact], lineage: [lineage] });
      return;
    }
    case "same-nonce-two-tasks": {
      // An authority that issued one nonce twice: two tasks, two artifacts, one nonce. At most one runs (invariant 2).
      const nonce = w.nextNonce("shared");
      const rs = [w.track(record(id("-a"), kind, "may-run", "", { nonce })), w.track(record(id("-b"), kind, "may-run", "", { nonce }))];
      const grants = await Promise.all(rs.map((r) => grant(c, r.taskId, { nonce })));
      rs.forEach((r, i) => void spawn(c, r, grants[i]!.artifact, amount(rng)));
      return;
    }
    case "same-task-two-artifacts": {
      // One task id, two valid artifacts (two nonces), submitted at once. At most one runs (invariant 2).
      const r = w.track(record(id(), kind, "may-run", "", { multiSubmission: true }));
      const gs = [await grant(c, r.taskId), await grant(c, r.taskId)];
      r.nonce = gs[0]!.nonce;
      r.notes.push(`second nonce ${gs[1]!.nonce}`);
      const args = amount(rng);
      const reqs = gs.map((g) => request(c, w.agents[0]!, r.taskId, g.artifact, args));
      void submit(c, r, { request: reqs[0]!, args, chain: [gs[0]!.artifact] });
      const second = JSON.stringify({ request: reqs[1]!, args });
      void (async () => {
        await jetstream(w.nc).publish(SUBJECTS.artifact(r.taskId), JSON.stringify(gs[1]!.artifact));
        await publishRaw(w, second);
      })().catch((e: unknown) => r.notes.push(`second submission failed: ${String(e)}`));
      return;
    }
    default: {
      const never: never = kind;
      throw new Error(`unknown kind ${String(never)}`);
    }
  }
}

/**
 * While a gateway is down: grant a task, revoke its artifact, and wait until every gateway still
 * running has folded the revocation. Returns what to do once the crashed one is back: submit the
 * task, and a copy of it, so that each gateway may pull one. The restarted gateway reads the whole
 * governance stream before it takes work, so it must deny it too.
 */
export async function revokedWhileDown(c: ScenarioContext, rng: Rng, n: number): Promise<(() => void) | undefined> {
  const { w } = c;
  const r = w.track(record(`s${c.seed.toString(36)}-${n}-revoked-while-down`, "revoked-while-down", "may-run", "", { multiSubmission: true }));
  const { artifact, nonce } = await grant(c, r.taskId);
  r.nonce = nonce;
  await w.h.authority.revoke({ type: "artifact", id: artifactId(artifact) }, "soak: revoked while a gateway is down");
  if (await w.revocationApplied(artifactId(artifact))) {
    r.expect = "must-deny";
    r.why = "REVOKED: revoked (acked, and folded by the gateway still up) before the crashed gateway restarted";
  } else r.notes.push("revocation not folded by the live gateway in time: not held to a deny");
  const args = amount(rng);
  const req = request(c, w.agents[0]!, r.taskId, artifact, args);
  return () => {
    void submit(c, r, { request: req, args, chain: [artifact] });
    void (async () => {
      await sleep(rng.pick([0, 50, 300]));
      await publishRaw(w, r.body!).catch((e: unknown) => r.notes.push(`copy publish failed: ${String(e)}`));
    })();
  };
}
