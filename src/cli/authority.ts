// `failclosed authority`: a policy authority on the bus, for deployments run from the command
// line (docker-compose's gateway included). It publishes the active policy, keeps the revocation
// feed fresh with heartbeats until SIGINT/SIGTERM, and publishes signed revocation files. Without
// an authority, every gateway denies GOVERNANCE_UNAVAILABLE: no policy, no fresh feed.
import { Command } from "commander";
import { check, signedRevocationSchema } from "../core/schema.ts";
import type { SignedRevocation } from "../core/types.ts";
import { verifySigned } from "../crypto/signing.ts";
import { DEFAULT_POLICY } from "../policy/default-policy.ts";
import { Authority, PolicyBucketUnreadable } from "../runtime/authority.ts";
import { CliError, readJsonFile, type CliIo } from "./io.ts";
import { readKeyFile } from "./keys.ts";
import { collect } from "./options.ts";
import { readPolicyFile } from "./policy.ts";
import { assertAcceptableKey } from "../core/trust-store.ts";

export function authorityCommand(io: CliIo): Command {
  return new Command("authority")
    .description("run a policy authority: publish the policy, heartbeat until SIGINT/SIGTERM, publish revocations")
    .option("--nats <url>", "NATS server", "nats://127.0.0.1:4222")
    .requiredOption("--key <file>", "the authority's key file")
    .option("--policy <file>", "policy document to publish (default: the built-in default policy)")
    .option("--heartbeat-ms <ms>", "heartbeat interval (gateways deny once the feed is older than their maxFeedAgeMs, 30 s by default)", "1000")
    .option("--revoke <file>", "a signed revocation file (failclosed revoke --out) to publish; repeatable", collect, [] as string[])
    .option("--revocation-log <file>", "keep every revocation this authority publishes in FILE, and publish again at start what the feed has lost")
    .option("--peer <keyId>", "another authority the gateways trust, whose policy entries this one counts past and announces; repeatable", collect, [] as string[])
    .option("--once", "publish the policy and revocations, one heartbeat, and exit")
    .action(async (o: { nats: string; key: string; policy?: string; heartbeatMs: string; revoke: string[]; revocationLog?: string; peer: string[]; once?: boolean }): Promise<void> => {
      const heartbeatMs = Number(o.heartbeatMs);
      if (!/^\d+$/.test(o.heartbeatMs) || heartbeatMs < 100 || heartbeatMs > 3_600_000) throw new CliError("USAGE", `--heartbeat-ms: expected 100–3600000, got ${JSON.stringify(o.heartbeatMs)}`);
      if (heartbeatMs >= 30_000) io.err(`failclosed authority: warning: gateways deny once the feed is older than their maxFeedAgeMs (30 s by default); --heartbeat-ms ${heartbeatMs} leaves them stale between heartbeats\n`);
      const key = readKeyFile(o.key);
      for (const peer of o.peer) {
        try {
          assertAcceptableKey(peer);
        } catch (e) {
          throw new CliError("INVALID_INPUT", `--peer ${JSON.stringify(peer)}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        }
      }
      const doc = o.policy !== undefined ? readPolicyFile(o.policy) : DEFAULT_POLICY;
      // Every revocation is read and checked before anything is published.
      const revocations: SignedRevocation[] = o.revoke.map((file) => {
        const r = check(signedRevocationSchema, readJsonFile(file, "revocation"));
        if (!r.ok) throw new CliError("INVALID_INPUT", `${file}: not a signed revocation (${r.error})`);
        if (r.value.payload.issuer !== key.keyId) throw new CliError("INVALID_INPUT", `${file}: issued by ${r.value.payload.issuer}, not by this authority`);
        if (!verifySigned("revocation", r.value, key.publicKey)) throw new CliError("VERIFICATION", `${file}: its signature does not verify under this authority's key`);
        return r.value;
      });
      let authority: Authority;
      try {
        authority = await Authority.connect({ natsUrl: o.nats, key, peers: o.peer, onWarning: (m) => io.err(`failclosed authority: ${m}\n`), ...(o.revocationLog !== undefined ? { revocationLog: o.revocationLog } : {}) });
      } catch (e) {
        if (e instanceof TypeError) throw new CliError("INVALID_INPUT", e.message, { cause: e });
        if (e instanceof PolicyBucketUnreadable) throw new CliError("IO", `the policy bucket on NATS at ${o.nats} did not answer in time, three times: ${e.message}`, { cause: e });
        throw new CliError("IO", `cannot reach NATS at ${o.nats}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      try {
        let digest: string;
        try {
          digest = await authority.publishPolicy(doc);
        } catch (e) {
          // A document gateways would refuse is the operator's input; anything else is the bus.
          if (!(e instanceof TypeError)) throw e;
          throw new CliError("INVALID_INPUT", `policy not published: ${e.message}`, { cause: e });
        }
        io.err(`failclosed authority ${key.keyId}: policy ${doc.id} (${digest}) published on ${o.nats}, version ${authority.policyVersion}\n`);
        for (const r of revocations) {
          await authority.publishRevocation(r);
          io.err(`failclosed authority: revocation of ${JSON.stringify(r.payload.target)} published\n`);
        }
        if (o.once === true) {
          await authority.heartbeat();
          return;
        }
        let failures = 0;
        await authority.startHeartbeats(heartbeatMs, (e) => {
          // Every gateway will deny once the feed goes stale: say so, once per run of failures.
          if (failures++ === 0) io.err(`failclosed authority: heartbeat failed (gateways deny once the feed is stale): ${e instanceof Error ? e.message : String(e)}\n`);
        });
        io.err(`failclosed authority: heartbeats every ${heartbeatMs} ms until SIGINT/SIGTERM\n`);
        await new Promise<void>((resolve) => {
          const done = (): void => {
            process.off("SIGINT", done);
            process.off("SIGTERM", done);
            clearInterval(watch);
            resolve();
          };
          // A heartbeat landing again after failures is news too.
          let seen = authority.lastHeartbeatAt;
          const watch = setInterval(() => {
            if (authority.lastHeartbeatAt !== seen && failures > 0) {
              io.err(`failclosed authority: heartbeats landing again after ${failures} failure(s)\n`);
              failures = 0;
            }
            seen = authority.lastHeartbeatAt;
          }, heartbeatMs);
          process.once("SIGINT", done);
          process.once("SIGTERM", done);
        });
      } finally {
        await authority.close();
      }
    });
}
