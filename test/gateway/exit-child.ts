// Test fixture (not a suite) for exits.test.ts: each mode ends with everything stopped, and the
// process must then exit on its own. Whatever stays open (a connection reconnecting forever, a
// timer) keeps it alive, and the test sees it killed instead.
//   failed-start <natsUrl> <dir>: a gateway, then a second on the same audit dir (which fails).
//   hung-handler <natsUrl> <dir>: a task whose handler never settles, then everything closed.
import { Gateway } from "../../src/gateway/gateway.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness } from "../../src/testkit/harness.ts";
import { DEFAULT_SCOPE, namedKey, namedNonce } from "../../src/testkit/world.ts";

const [mode, natsUrl, dir] = process.argv.slice(2) as [string, string, string];
const say = (line: string): void => void process.stdout.write(`${line}\n`);

if (mode === "failed-start") {
  const options = (gatewayId: string) => ({ natsUrl, gatewayId, gatewayKey: namedKey("gateway-1"), audit: dir, authorities: [namedKey("authority").keyId], verifyWorkers: 1 });
  const first = await Gateway.start(options("gw-1"));
  try {
    await Gateway.start(options("gw-2"));
    say("second start succeeded");
  } catch (e) {
    say(`second start failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  await first.stop();
  say("stopped");
} else if (mode === "hung-handler") {
  const h = await startHarness({ natsUrl, gateway: { stopGraceMs: 300 } });
  let started!: () => void;
  const handlerStarted = new Promise<void>((r) => (started = r));
  h.gateways[0]!.registerAction("transfer", () => {
    started();
    return new Promise(() => undefined); // never settles
  });
  const agent = namedKey("agent-0");
  const taskId = newTaskId();
  const now = Date.now();
  const { artifact } = await h.authority.grant({ taskId, holder: agent.keyId, scope: DEFAULT_SCOPE, validity: { notBefore: now - 60_000, expiresAt: now + 3_600_000 }, nonce: namedNonce(`hung-${taskId}`), attribution: { initiator: "t", reason: "hung handler" } });
  void h.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: [artifact], taskId }).outcome;
  await handlerStarted;
  await h.close();
  say("stopped");
} else {
  say(`unknown mode ${mode}`);
  process.exitCode = 2;
}
