// A gateway in its own process (what a deployment runs), for the end-to-end benchmark.
// argv: natsUrl gatewayId auditDir
import { Gateway } from "../src/gateway/gateway.ts";
import { namedKey } from "../src/testkit/world.ts";

const [natsUrl, gatewayId, audit] = process.argv.slice(2);
if (!natsUrl || !gatewayId || !audit) {
  console.error("usage: gateway-proc natsUrl gatewayId auditDir");
  process.exit(2);
}
const n = Number(gatewayId.split("-")[1] ?? 1);
const gw = await Gateway.start({
  natsUrl,
  gatewayId,
  gatewayKey: namedKey(`gateway-${n}`),
  audit,
  authorities: [namedKey("authority").keyId],
  peerGateways: [1, 2, 3, 4].map((i) => namedKey(`gateway-${i}`).keyId),
  attributes: { name: "staging" },
  evidenceDeadlineMs: 5_000,
  maxInFlight: 512,
  ...(process.env["FC_VERIFY_WORKERS"] !== undefined ? { verifyWorkers: Number(process.env["FC_VERIFY_WORKERS"]) } : {}),
});
gw.registerAction("transfer", () => ({ ok: true }));
process.stdout.write("ready\n");
const stop = () => {
  gw.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
