// An adversarial agent. It holds real, narrow grants from the authority and real bus access,
// and tries to get more than it was given: widen a delegation, replay a captured submission,
// forge the authority's signature, use an expired grant, graft itself onto another agent's
// lineage, and keep acting after it was revoked. Every attempt says which denial it expects;
// the report shows what the gateway actually decided.
import {
  ARTIFACT_KIND,
  SUBJECTS,
  artifactId,
  delegateArtifact,
  generateKeyPair,
  newTaskId,
  signPayload,
  signRequest,
  spawnLineage,
  submitTask,
  tryParseStrict,
  type ArtifactPayload,
  type ArtifactScope,
  type JsonValue,
  type KeyPair,
  type RevocationTarget,
  type Runtime,
  type SignedArtifact,
  type SignedLineage,
  type SignedRequest,
  type TaskOutcome,
} from "../src/index.ts";
import { ALLOW, deny, freshNonce, judge, sideCheck, summarize, windowFromNow, type AgentEnv, type AgentReport, type Expectation, type SideCheck, type TaskReport } from "./report.ts";

/** Evidence is not secret: anyone on the bus sees every artifact and lineage event. */
export interface Eavesdropper {
  readonly artifacts: Map<string, SignedArtifact>;
  readonly lineage: SignedLineage[];
  stop(): void;
}

export function eavesdrop(rt: Runtime): Eavesdropper {
  const artifacts = new Map<string, SignedArtifact>();
  const lineage: SignedLineage[] = [];
  const sub = rt.nc.subscribe(SUBJECTS.evidenceAll);
  void (async () => {
    for await (const m of sub) {
      const p = tryParseStrict(m.data);
      if (!p.ok || typeof p.value !== "object" || p.value === null || Array.isArray(p.value)) continue;
      const payload = p.value["payload"];
      if (typeof payload !== "object" || payload === null || Array.isArray(payload) || typeof p.value["sig"] !== "string") continue;
      if (m.subject.endsWith(".artifact")) {
        const a = p.value as unknown as SignedArtifact;
        artifacts.set(artifactId(a), a);
      } else if (m.subject.endsWith(".lineage")) {
        lineage.push(p.value as unknown as SignedLineage);
      }
    }
  })().catch(() => undefined);
  return { artifacts, lineage, stop: () => sub.unsubscribe() };
}

export interface AdversaryOptions {
  /** Resolves once the gateway has the revocation in force (the demo watches its ledger). */
  awaitRevocation: (target: RevocationTarget) => Promise<void>;
  /** For the replay attempt: how much the adversary's account holds. */
  balanceOf: (account: string) => number;
  /** What it overheard on the bus while honest agents worked. */
  overheard: Eavesdropper;
}

export const ADVERSARY_ACCOUNT = "adversary";

const READ_REPORT = { action: "read", resource: "reports/public" } as const;
const READ_PUBLIC: ArtifactScope = { actions: ["read"], resources: ["reports/public"], constraints: {} };
const SMALL_PAYMENTS: ArtifactScope = { actions: ["transfer"], resources: ["payments/"], constraints: { amount: { min: 1, max: 50 } } };

export function createAdversary(): { key: KeyPair; run(env: AgentEnv, o: AdversaryOptions): Promise<AgentReport> } {
  const key = generateKeyPair();
  const attribution = { initiator: "mallory@example.com", reason: "routine work (allegedly)" };

  return {
    key,
    async run(env, o) {
      const tasks: TaskReport[] = [];
      const checks: SideCheck[] = [];
      const record = (label: string, what: { action: string; resource: string }, depth: number, expected: Expectation, out: TaskOutcome): void => {
        const t = judge({ agent: "adversary", label, action: what.action, resource: what.resource, depth, expected }, out);
        env.log(`adversary: ${label}: ${t.actual.verdict} ${t.actual.codes.join(",")}${t.actual.detail !== undefined ? ` (${t.actual.detail})` : ""}`);
        tasks.push(t);
      };
      const grant = (taskId: string, scope: ArtifactScope, validity = windowFromNow(60_000, 10 * 60_000)) =>
        env.authority.grant({ taskId, holder: key.keyId, scope, validity, nonce: freshNonce(), attribution });
      const submit = (request: SignedRequest, args: JsonValue, chain: SignedArtifact[], lineage: SignedLineage[] = []) =>
        submitTask(env.rt.nc, { request, args, chain, lineage, timeoutMs: 20_000, ...(env.rt.gateway !== undefined ? { gatewayKeys: new Set([env.rt.gateway.keyId]) } : {}) });

      // 1. Scope escalation. The API refuses to sign a widening delegation...
      {
        const parentTask = newTaskId();
        const { artifact: root, lineage: origin } = await grant(parentTask, SMALL_PAYMENTS);
        const widened: ArtifactScope = { ...SMALL_PAYMENTS, constraints: { amount: { min: 1, max: 100_000 } } };
        let refusal = "signed";
        try {
          delegateArtifact(root, key, { holder: key.keyId, scope: widened, validity: root.payload.validity, nonce: freshNonce(), attribution });
        } catch (e) {
          refusal = e instanceof Error ? e.name : "non-error";
        }
        checks.push(sideCheck("adversary", "delegateArtifact refuses a widening delegation", "TypeError", refusal));
        // ...so it signs the widened child by hand, with a spawn event it signed itself.
        const payload: ArtifactPayload = {
          ...root.payload,
          issuer: key.keyId,
          holder: key.keyId,
          scope: widened,
          nonce: freshNonce(),
          parent: artifactId(root),
          depth: 1,
        };
        const child = signPayload("artifact", payload, key);
        const taskId = newTaskId();
        const spawn = spawnLineage(key, { gatewayId: env.gatewayId, childTaskId: taskId, childArtifact: child, parentTaskId: parentTask, parentArtifactId: artifactId(root), parentDecisionId: artifactId(root), emittedAt: Date.now() });
        const args = { from: "treasury", to: ADVERSARY_ACCOUNT, amount: 90_000 };
        const req = signRequest(key, { taskId, action: "transfer", resource: "payments/transfer", args, artifact: child, parentTaskId: parentTask, createdAt: Date.now() });
        // Caught twice over: the link widens its parent, and the amount breaks the root's own bound.
        record("hand-signed delegation widening its amount limit", req.payload, 1, deny("LINEAGE_BROKEN", "POLICY_MISMATCH"), await submit(req, args, [root, child], [origin, spawn]));
      }

      // 2. Nonce replay: an honest small payment to itself, captured and sent again verbatim.
      {
        const taskId = newTaskId();
        const { artifact, lineage: origin } = await grant(taskId, SMALL_PAYMENTS);
        const args = { from: "treasury", to: ADVERSARY_ACCOUNT, amount: 40 };
        const req = signRequest(key, { taskId, action: "transfer", resource: "payments/transfer", args, artifact, createdAt: Date.now() });
        const before = o.balanceOf(ADVERSARY_ACCOUNT);
        record("honest small payment (captured for replay)", req.payload, 0, ALLOW, await submit(req, args, [artifact]));
        record("the same submission replayed verbatim", req.payload, 0, deny("REPLAYED"), await submit(req, args, [artifact], [origin]));
        checks.push(sideCheck("adversary", "replayed payment credited once", String(before + 40), String(o.balanceOf(ADVERSARY_ACCOUNT))));
      }

      // 3. Forgery: raise the amount limit of a genuine grant and keep the authority's signature
      //    (the origin event is re-pointed at the altered artifact the same way).
      {
        const { artifact, lineage: origin } = await grant(newTaskId(), SMALL_PAYMENTS);
        const taskId = newTaskId();
        const forged: SignedArtifact = { payload: { ...artifact.payload, scope: { ...SMALL_PAYMENTS, constraints: { amount: { min: 1, max: 9_000 } } } }, sig: artifact.sig };
        const forgedOrigin = { payload: { ...origin.payload, childTaskId: taskId, childArtifactId: artifactId(forged) }, sig: origin.sig } as SignedLineage;
        const args = { from: "treasury", to: ADVERSARY_ACCOUNT, amount: 9_000 };
        const req = signRequest(key, { taskId, action: "transfer", resource: "payments/transfer", args, artifact: forged, createdAt: Date.now() });
        record("grant with a raised limit under the authority's old signature", req.payload, 0, deny("BAD_SIGNATURE"), await submit(req, args, [forged], [forgedOrigin]));
      }

      // 4. An expired grant.
      {
        const taskId = newTaskId();
        const now = Date.now();
        const { artifact } = await grant(taskId, READ_PUBLIC, { notBefore: now - 2 * 3_600_000, expiresAt: now - 3_600_000 });
        const out = await env.rt.spawn({ agent: key, ...READ_REPORT, args: {}, chain: [artifact], taskId }).outcome;
        record("a grant that expired an hour ago", READ_REPORT, 0, deny("EXPIRED"), out);
      }

      // 5. Lineage splicing: graft its own link under the planner's genuine, gateway-signed
      //    lineage (overheard on the bus) to borrow the orchestrator's standing.
      {
        const spliced = spliceTarget(o.overheard);
        if (!spliced) {
          checks.push(sideCheck("adversary", "overheard a depth-1 spawn event to splice onto", "yes", "no"));
        } else {
          const { root, origin, planner, spawn } = spliced;
          const taskId = newTaskId();
          const payload: ArtifactPayload = {
            kind: ARTIFACT_KIND,
            issuer: key.keyId,
            holder: key.keyId,
            scope: { actions: ["read"], resources: ["projects/q3-report/sources"], constraints: { tokens: { min: 1, max: 100 } } },
            bindings: planner.payload.bindings,
            validity: planner.payload.validity,
            nonce: freshNonce(),
            policy: planner.payload.policy,
            parent: artifactId(planner),
            depth: 2,
            attribution,
            metadata: {},
          };
          const graft = signPayload("artifact", payload, key);
          const graftEvent = spawnLineage(key, {
            gatewayId: env.gatewayId,
            childTaskId: taskId,
            childArtifact: graft,
            parentTaskId: spawn.payload.childTaskId,
            parentArtifactId: artifactId(planner),
            parentDecisionId: spawn.payload.type === "spawn" ? spawn.payload.parentDecisionId : artifactId(planner),
            emittedAt: Date.now(),
          });
          const args = { tokens: 50 };
          const req = signRequest(key, { taskId, action: "read", resource: "projects/q3-report/sources", args, artifact: graft, parentTaskId: spawn.payload.childTaskId, createdAt: Date.now() });
          record("own link grafted under the planner's genuine lineage", req.payload, 2, deny("LINEAGE_BROKEN"), await submit(req, args, [root, planner, graft], [origin, spawn, graftEvent]));
        }
      }

      // 6. Acting after revocation: first its grant is revoked, then its key.
      {
        const taskId = newTaskId();
        const { artifact } = await grant(taskId, READ_PUBLIC);
        const target: RevocationTarget = { type: "artifact", id: artifactId(artifact) };
        await env.authority.revoke(target, "adversary flagged by monitoring");
        await o.awaitRevocation(target);
        const out = await env.rt.spawn({ agent: key, ...READ_REPORT, args: {}, chain: [artifact], taskId }).outcome;
        record("uses a grant after it was revoked", READ_REPORT, 0, deny("REVOKED"), out);
      }
      {
        // A grant issued before the key is revoked, used after: the key's revocation covers it.
        const taskId = newTaskId();
        const { artifact } = await grant(taskId, READ_PUBLIC);
        const target: RevocationTarget = { type: "key", keyId: key.keyId };
        await env.authority.revoke(target, "adversary key compromised");
        await o.awaitRevocation(target);
        const out = await env.rt.spawn({ agent: key, ...READ_REPORT, args: {}, chain: [artifact], taskId }).outcome;
        record("uses an unrevoked grant after its key was revoked", READ_REPORT, 0, deny("REVOKED"), out);
      }
      return summarize("adversary", tasks, checks);
    },
  };
}

/** From what was overheard: a root, its origin event, and a depth-1 child with its spawn event. */
function spliceTarget(e: Eavesdropper): { root: SignedArtifact; origin: SignedLineage; planner: SignedArtifact; spawn: SignedLineage } | undefined {
  for (const spawn of e.lineage) {
    if (spawn.payload.type !== "spawn") continue;
    const planner = e.artifacts.get(spawn.payload.childArtifactId);
    const root = e.artifacts.get(spawn.payload.parentArtifactId);
    if (!planner || !root || planner.payload.depth !== 1) continue;
    const rootId = artifactId(root);
    const origin = e.lineage.find((l) => l.payload.type === "origin" && l.payload.childArtifactId === rootId);
    if (origin) return { root, origin, planner, spawn };
  }
  return undefined;
}
