// Run by connect-failure.test.ts in a child process: Runtime.connect calls that fail after the
// NATS connection is open, then everything this script opened is closed. A connection a failed
// connect left open would keep reconnecting to the stopped server, and the process would never
// exit on its own: the test expects a clean exit.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { generateKeyPair } from "../../src/crypto/keys.ts";
import { startNatsServer } from "../../src/infra/nats-launcher.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { Runtime } from "../../src/runtime/runtime.ts";

const server = await startNatsServer();
const dir = await mkdtemp(join(tmpdir(), "failclosed-connect-failure-"));
const errors: { name: string; message: string }[] = [];
const attempt = async (o: Parameters<typeof Runtime.connect>[0]): Promise<void> => {
  try {
    const rt = await Runtime.connect(o);
    await rt.close();
    errors.push({ name: "none", message: "connect succeeded" });
  } catch (e) {
    errors.push({ name: e instanceof Error ? e.name : typeof e, message: e instanceof Error ? e.message : String(e) });
  }
};
// ensureBus fails: a foreign stream already holds the submit subject, so the task stream cannot be made.
const nc = await connect({ servers: server.url });
const jsm = await jetstreamManager(nc);
await jsm.streams.add({ name: "SQUATTER", subjects: [SUBJECTS.taskSubmit] });
await attempt({ natsUrl: server.url, gatewayKeys: [generateKeyPair().keyId] });
await jsm.streams.delete("SQUATTER");
await nc.close();
// Gateway.start refuses its options after the runtime's connection is open (and ensureBus ran).
await attempt({ natsUrl: server.url, dataDir: join(dir, "audit"), gateway: { gatewayId: "gw.2", gatewayKey: generateKeyPair(), authorities: [generateKeyPair().keyId] } });
await server.stop();
await rm(dir, { recursive: true, force: true });
console.log(JSON.stringify(errors));
