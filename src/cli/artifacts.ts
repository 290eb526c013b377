// `failclosed issue|delegate|revoke`: make signed artifacts and revocations at the edge. An
// artifact file holds the chain root … leaf as a JSON array: exactly what a task's evidence
// carries (DESIGN §6), so the file can be published as is.
import { randomBytes } from "node:crypto";
import { Command, Option } from "commander";
import { jetstream } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { artifactId, delegateArtifact, issueArtifact, originLineage, revoke } from "../core/artifacts.ts";
import { CHILD_TASK_PREFIX_LENGTH, hasChildTaskIdForm } from "../core/child-task-id.ts";
import { check, signedArtifactSchema } from "../core/schema.ts";
import type { ArtifactBindings, Attribution, NumericConstraint, RevocationTarget, SignedArtifact, SignedLineage, Validity } from "../core/types.ts";
import { fromB64u, toB64u } from "../crypto/base64url.ts";
import { checkPublicKey } from "../crypto/ed25519.ts";
import { verifySigned } from "../crypto/signing.ts";
import { STREAMS, SUBJECTS, TASK_ID_RE } from "../nats/contract.ts";
import { DEFAULT_POLICY } from "../policy/default-policy.ts";
import { policyDigest } from "../policy/policy-document.ts";
import { codeDigest } from "../sim/scenario-format.ts";
import { CliError, jsonText, readJsonFile, writeOutFile, type CliIo } from "./io.ts";
import { readKeyFile } from "./keys.ts";
import { collect, constraints, durationMs, instant, list, pairs } from "./options.ts";
import { readPolicyFile } from "./policy.ts";

/** A key id, or the path of a key file (a key id never contains "/" or "."). */
export function keyIdArg(value: string, option: string): string {
  if (/[/.]/.test(value)) return readKeyFile(value).keyId;
  const pub = fromB64u(value, 32);
  if (!pub) throw new CliError("USAGE", `${option}: "${value}" is neither a key id (43 base64url characters) nor a key file path`);
  const ok = checkPublicKey(pub);
  if (!ok.ok) throw new CliError("USAGE", `${option}: key ${value} refused (${ok.problem})`);
  return value;
}

/** Read an artifact file: a chain array (root first) or a single signed artifact (a root). */
export function readChain(path: string): SignedArtifact[] {
  const v = readJsonFile(path, "artifact chain");
  const items = Array.isArray(v) ? v : [v];
  if (items.length === 0) throw new CliError("INVALID_INPUT", `${path}: empty artifact chain`);
  return items.map((item, i) => {
    const r = check(signedArtifactSchema, item);
    if (!r.ok) throw new CliError("INVALID_INPUT", `${path}: artifact[${i}] ${r.error}`);
    return r.value;
  });
}

/** Each link's signature under its named issuer; the trust decision itself is the gateway's. */
function verifyChainSignatures(chain: SignedArtifact[], path: string): void {
  chain.forEach((a, i) => {
    const pub = fromB64u(a.payload.issuer, 32);
    if (!pub || !verifySigned("artifact", a, pub)) throw new CliError("VERIFICATION", `${path}: artifact[${i}] signature does not verify under its issuer`);
    if (i > 0 && a.payload.parent !== artifactId(chain[i - 1]!)) throw new CliError("VERIFICATION", `${path}: artifact[${i}] does not name artifact[${i - 1}] as parent`);
  });
}

interface ScopeOpts {
  actions?: string;
  resources?: string;
  max?: string[];
  min?: string[];
  validFor?: string;
  notBefore?: string;
  env?: string[];
  gateway?: string[];
  code?: string;
  codeDigest?: string;
  initiator?: string;
  onBehalfOf?: string;
  reason?: string;
  nonce?: string;
  out?: string;
  json?: boolean;
}

function scopeOptions(c: Command, required: boolean): Command {
  const opt = (flags: string, text: string): Option => (required ? new Option(flags, text).makeOptionMandatory() : new Option(flags, text));
  return c
    .addOption(opt("--actions <list>", `comma-separated actions${required ? "" : " (default: the parent's)"}`))
    .addOption(opt("--resources <list>", `comma-separated resource paths${required ? "" : " (default: the parent's)"}`))
    .option("--max <name=value>", "upper bound on a numeric argument (repeatable)", collect)
    .option("--min <name=value>", "lower bound on a numeric argument (repeatable)", collect)
    .option("--valid-for <duration>", `validity from not-before, e.g. 1h${required ? "" : " (default: until the parent expires)"}`)
    .option("--not-before <instant>", `ISO instant or offset from now like +10m (default: ${required ? "now" : "the parent's"})`)
    .option("--env <name=value>", "environment binding (repeatable)", collect)
    .option("--gateway <id>", "gateway binding (repeatable)", collect)
    .option("--code <text>", "bind the agent code: digest of this code string")
    .option("--code-digest <b64u>", "bind the agent code by its digest")
    .option("--initiator <who>", "attribution: who asked")
    .option("--on-behalf-of <who>", "attribution: on whose behalf")
    .option("--reason <text>", "attribution: why")
    .option("--nonce <b64u>", "single-use nonce (default: 32 random bytes)")
    .option("--out <file>", "write the artifact chain JSON here (default: stdout)")
    .option("--json", "print the result as JSON");
}

function attribution(o: ScopeOpts, parent?: Attribution): Attribution {
  return {
    initiator: o.initiator ?? parent?.initiator ?? `cli:${process.env["USER"] ?? "unknown"}`,
    ...(o.onBehalfOf !== undefined ? { onBehalfOf: o.onBehalfOf } : parent?.onBehalfOf !== undefined ? { onBehalfOf: parent.onBehalfOf } : {}),
    reason: o.reason ?? parent?.reason ?? "issued with the failclosed CLI",
  };
}

function bindings(o: ScopeOpts, parent: ArtifactBindings = {}): ArtifactBindings {
  if (o.code !== undefined && o.codeDigest !== undefined) throw new CliError("USAGE", "give --code or --code-digest, not both");
  const env = { ...(parent.environment ?? {}), ...pairs(o.env, "--env") };
  const code = o.code !== undefined ? codeDigest(o.code) : (o.codeDigest ?? parent.agentCodeDigest);
  const gateways = o.gateway ?? parent.gateways;
  return {
    ...(gateways !== undefined ? { gateways } : {}),
    ...(code !== undefined ? { agentCodeDigest: code } : {}),
    ...(Object.keys(env).length > 0 ? { environment: env } : {}),
  };
}

function nonce(o: ScopeOpts): string {
  return o.nonce ?? toB64u(new Uint8Array(randomBytes(32)));
}

/**
 * Never hand out an artifact every gateway would refuse as MALFORMED (a short nonce, a code
 * digest that is not one, a bound that is not a safe integer, a date out of range).
 */
function checkIssuable(leaf: SignedArtifact): void {
  const shape = check(signedArtifactSchema, leaf);
  if (!shape.ok) throw new CliError("INVALID_INPUT", `the artifact would be malformed: ${shape.error}`);
  if (!Number.isFinite(new Date(leaf.payload.validity.notBefore).getTime()) || !Number.isFinite(new Date(leaf.payload.validity.expiresAt).getTime())) {
    throw new CliError("INVALID_INPUT", "the validity window is out of range");
  }
}

function printChain(io: CliIo, chain: SignedArtifact[], o: ScopeOpts, origin?: { taskId: string; lineage: SignedLineage; file?: string; published?: string }): void {
  const leaf = chain[chain.length - 1]!;
  checkIssuable(leaf);
  const p = leaf.payload;
  const info = {
    artifactId: artifactId(leaf),
    depth: p.depth,
    issuer: p.issuer,
    holder: p.holder,
    notBefore: new Date(p.validity.notBefore).toISOString(),
    expiresAt: new Date(p.validity.expiresAt).toISOString(),
    policy: p.policy,
  };
  if (o.out !== undefined) writeOutFile(o.out, jsonText(chain));
  const task = origin === undefined ? {} : { taskId: origin.taskId, ...(origin.file !== undefined ? { lineageFile: origin.file } : { lineage: origin.lineage }), ...(origin.published !== undefined ? { lineagePublishedOn: origin.published } : {}) };
  if (o.json) io.out(jsonText(o.out !== undefined ? { ...info, file: o.out, ...task } : { ...info, chain, ...task }));
  else if (o.out === undefined) io.out(jsonText(chain));
  else {
    const lines = [`artifact  ${info.artifactId}`, `depth     ${info.depth}`, `holder    ${info.holder}`, `valid     ${info.notBefore} → ${info.expiresAt}`, `wrote     ${o.out}`];
    if (origin !== undefined) lines.push(`task      ${origin.taskId}`, ...(origin.file !== undefined ? [`lineage   ${origin.file}`] : []), ...(origin.published !== undefined ? [`published the origin lineage on ${origin.published}`] : []));
    io.out(`${lines.join("\n")}\n`);
  }
}

export function issueCommand(io: CliIo): Command {
  return scopeOptions(
    new Command("issue")
      .description("issue a root artifact, signed by a policy authority")
      .requiredOption("--authority <keyfile>", "the authority's key file")
      .requiredOption("--holder <keyId|keyfile>", "the agent the artifact authorizes")
      .option("--policy <file>", "policy document (default: the built-in default policy)")
      .option("--task-id <id>", "the root task the artifact is for: signs its origin lineage, without which no gateway runs a task on it")
      .option("--lineage-out <file>", "with --task-id: write the signed origin lineage event here")
      .option("--nats <url>", "with --task-id: publish the origin lineage on the task's evidence subject, as an authority service's grant does"),
    true,
  ).action(async (o: ScopeOpts & { authority: string; holder: string; policy?: string; actions: string; resources: string; taskId?: string; lineageOut?: string; nats?: string }) => {
    const now = Date.now();
    const authority = readKeyFile(o.authority);
    const doc = o.policy !== undefined ? readPolicyFile(o.policy) : DEFAULT_POLICY;
    if (o.validFor === undefined) throw new CliError("USAGE", "--valid-for is required for a root artifact");
    const notBefore = o.notBefore !== undefined ? instant(o.notBefore, now, "--not-before") : now;
    const validity: Validity = { notBefore, expiresAt: notBefore + durationMs(o.validFor, "--valid-for") };
    const art = issueArtifact(authority, {
      holder: keyIdArg(o.holder, "--holder"),
      scope: { actions: list(o.actions), resources: list(o.resources), constraints: constraints(o.max, o.min) },
      bindings: bindings(o),
      validity,
      nonce: nonce(o),
      policy: { id: doc.id, digest: policyDigest(doc) },
      attribution: attribution(o),
    });
    if (o.taskId === undefined) {
      if (o.lineageOut !== undefined || o.nats !== undefined) throw new CliError("USAGE", "--lineage-out and --nats go with --task-id: the origin lineage names the task");
      // Said, not refused: an artifact may be made now and bound to its task by the authority later.
      io.err("note: no --task-id: no gateway runs a task on this artifact until an origin lineage signed by this authority names the task (failclosed issue --task-id, or Authority.grant)\n");
      printChain(io, [art], o);
      return;
    }
    if (!TASK_ID_RE.test(o.taskId)) throw new CliError("USAGE", `--task-id ${JSON.stringify(o.taskId)}: a task id is a subject-safe token (letters, digits, - and _)`);
    // Policy: as Authority.grant refuses it (found by review): a root task id of a child id's
    // form would let its holder take a child's id, predictable once labelled, ahead of the child.
    if (hasChildTaskIdForm(o.taskId)) throw new CliError("USAGE", `--task-id ${JSON.stringify(o.taskId)} has the form of a child task id (${CHILD_TASK_PREFIX_LENGTH} characters, then '_'): a root task id must not`);
    // Every check printChain makes, before any lineage is written or published for it.
    checkIssuable(art);
    const lineage = originLineage(authority, { childTaskId: o.taskId, childArtifact: art, emittedAt: now });
    if (o.lineageOut !== undefined) writeOutFile(o.lineageOut, jsonText(lineage));
    let published: string | undefined;
    if (o.nats !== undefined) {
      await publishLineage(o.nats, o.taskId, lineage);
      published = SUBJECTS.lineage(o.taskId);
    }
    printChain(io, [art], o, { taskId: o.taskId, lineage, ...(o.lineageOut !== undefined ? { file: o.lineageOut } : {}), ...(published !== undefined ? { published } : {}) });
  });
}

/** Publish an origin lineage on its task's evidence subject (JetStream: acked by the evidence stream, or an error). */
async function publishLineage(url: string, taskId: string, lineage: SignedLineage): Promise<void> {
  let nc: NatsConnection;
  try {
    nc = await connect({ servers: url, maxReconnectAttempts: 0 });
  } catch (e) {
    throw new CliError("IO", `cannot reach NATS at ${url}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  try {
    await jetstream(nc).publish(SUBJECTS.lineage(taskId), JSON.stringify(lineage), { expect: { streamName: STREAMS.evidence } });
  } catch (e) {
    throw new CliError("IO", `publishing the origin lineage on ${SUBJECTS.lineage(taskId)} failed (is the bus set up? a gateway or an authority service makes its streams): ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  } finally {
    await nc.close().catch(() => undefined);
  }
}

export function delegateCommand(io: CliIo): Command {
  return scopeOptions(
    new Command("delegate")
      .description("delegate a narrower artifact from one you hold (refused if it would widen its parent)")
      .requiredOption("--parent <file>", "artifact chain file of the parent")
      .requiredOption("--key <keyfile>", "key file of the parent's holder (the signer)")
      .requiredOption("--holder <keyId|keyfile>", "the agent the new artifact authorizes"),
    false,
  ).action((o: ScopeOpts & { parent: string; key: string; holder: string }) => {
    const now = Date.now();
    const chain = readChain(o.parent);
    verifyChainSignatures(chain, o.parent);
    const parent = chain[chain.length - 1]!;
    const pp = parent.payload;
    const key = readKeyFile(o.key);
    const notBefore = o.notBefore !== undefined ? instant(o.notBefore, now, "--not-before") : pp.validity.notBefore;
    const expiresAt = o.validFor !== undefined ? notBefore + durationMs(o.validFor, "--valid-for") : pp.validity.expiresAt;
    const own = constraints(o.max, o.min);
    const merged: Record<string, NumericConstraint> = { ...pp.scope.constraints };
    for (const [k, b] of Object.entries(own)) merged[k] = { ...merged[k], ...b };
    let child: SignedArtifact;
    try {
      child = delegateArtifact(parent, key, {
        holder: keyIdArg(o.holder, "--holder"),
        scope: {
          actions: o.actions !== undefined ? list(o.actions) : pp.scope.actions,
          resources: o.resources !== undefined ? list(o.resources) : pp.scope.resources,
          constraints: merged,
        },
        bindings: bindings(o, pp.bindings),
        validity: { notBefore, expiresAt },
        nonce: nonce(o),
        attribution: attribution(o, pp.attribution),
      });
    } catch (e) {
      // delegateArtifact refuses a widening (or a signer who is not the holder) with a TypeError
      // whose message is the reason: a usage error, shown as is.
      if (e instanceof TypeError) throw new CliError("WIDENING", e.message, { cause: e });
      throw e;
    }
    printChain(io, [...chain, child], o);
  });
}

export function revokeCommand(io: CliIo): Command {
  return new Command("revoke")
    .description("sign a revocation of an artifact (and all its descendants) or of a key")
    .requiredOption("--authority <keyfile>", "the authority's key file")
    .addOption(new Option("--artifact <id|file>", "artifact id, or an artifact chain file (its leaf is revoked)").conflicts("key"))
    .addOption(new Option("--key <keyId|keyfile>", "key to revoke").conflicts("artifact"))
    .requiredOption("--reason <text>", "why (recorded in the audit log)")
    .option("--out <file>", "write the signed revocation here (default: stdout)")
    .option("--json", "print the result as JSON")
    .action((o: { authority: string; artifact?: string; key?: string; reason: string; out?: string; json?: boolean }) => {
      let target: RevocationTarget;
      if (o.artifact !== undefined) {
        const id = /[/.]/.test(o.artifact) ? artifactId(readChain(o.artifact).at(-1)!) : o.artifact;
        if (!fromB64u(id, 32)) throw new CliError("USAGE", `--artifact: "${o.artifact}" is neither an artifact id nor a chain file`);
        target = { type: "artifact", id };
      } else if (o.key !== undefined) {
        target = { type: "key", keyId: keyIdArg(o.key, "--key") };
      } else {
        throw new CliError("USAGE", "revoke needs --artifact or --key");
      }
      const signed = revoke(readKeyFile(o.authority), target, o.reason, Date.now());
      if (o.out !== undefined) writeOutFile(o.out, jsonText(signed));
      if (o.json) io.out(jsonText(o.out !== undefined ? { target, issuedAt: new Date(signed.payload.issuedAt).toISOString(), file: o.out } : signed));
      else if (o.out === undefined) io.out(jsonText(signed));
      else io.out(`revoked   ${target.type === "artifact" ? `artifact ${target.id}` : `key ${target.keyId}`}\nwrote     ${o.out}\n`);
    });
}
