// Two ways a following witness lost what a pass read (found by review):
// - a witness file that holds a fork is never rewritten, yet each pass's afterSeq moved on, so a
//   pass's checkpoints were neither kept nor fetched again, and a fork whose two sides land in two
//   passes was missed;
// - a failed lookup of the subject's last message (an account denied the message-get API, a
//   deadline) read as "nothing new": the pass said OK with nothing read while a fork was there.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { runAudit } from "../../src/audit/cli.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { ensureBus } from "../../src/nats/setup.ts";
import { SUBJECTS } from "../../src/nats/contract.ts";
import { captureIo } from "./support.ts";
import { GW_KEY, GatewayLog, publishCheckpoint, startBus, type Bus } from "./witness-hostile-support.ts";

const dir = mkdtempSync(join(tmpdir(), "fc-witness-follow-"));
type Pass = { read: number; ok: boolean; findings: { kind: string; where: string; detail: string }[] };
const passes = (out: string): Pass[] => out.trim().split("\n").map((l) => JSON.parse(l) as Pass);
const fileText = (origin: string, checkpoints: readonly unknown[]): string => `${JSON.stringify({ kind: "failclosed/witness/v1", origin, consistentThrough: 0, checkpoints }, null, 1)}\n`;
const waitFirstPass = async (io: ReturnType<typeof captureIo>): Promise<void> => {
  for (let i = 0; i < 400 && !io.stdout().includes("\n"); i++) await new Promise((r) => setTimeout(r, 25));
};

describe("a witness file that holds a fork, followed", () => {
  let bus: Bus;
  beforeAll(async () => {
    bus = await startBus();
  });
  afterAll(async () => {
    await bus?.close();
  });

  async function run(id: string, heldFork: boolean): Promise<Pass[]> {
    const a = await GatewayLog.open(id, join(dir, `${id}-a`));
    const b = await GatewayLog.open(id, join(dir, `${id}-b`));
    try {
      const a4 = await a.grow(4, "p");
      await b.grow(4, "p");
      const a9 = await a.grow(5, "a1");
      const b9 = await b.grow(5, "b1");
      const a14 = await a.grow(5, "a2");
      const b14 = await b.grow(5, "b2");
      const file = join(dir, `${id}.json`);
      writeFileSync(file, fileText(id, heldFork ? [a4, a9, b9] : [a4, a9]));
      await publishCheckpoint(bus, id, JSON.stringify(a14)); // read by pass 1 (the third checkpoint of A)
      const io = captureIo();
      const p = runAudit(["witness", "--nats", bus.url, "--gateway-id", id, "--gateway-key", GW_KEY.keyId, "--out", file, "--json", "--timeout-ms", "4000", "--no-consistency", "--follow", "--cycles", "2", "--interval-ms", "3000"], io);
      await waitFirstPass(io);
      await publishCheckpoint(bus, id, JSON.stringify(b14)); // B's, for the same size: read by pass 2
      expect(await p).toBe(1);
      return passes(io.stdout());
    } finally {
      await a.close();
      await b.close();
    }
  }

  it("control: a file without a fork finds a fork split across two passes", async () => {
    const [, second] = await run("gw-ctl", false);
    expect(second?.findings.some((f) => f.kind === "FORK" && f.where.startsWith("stream"))).toBe(true);
  }, 60_000);

  it("a file holding a fork finds it too: the pass that could not be kept is read again", async () => {
    const [first, second] = await run("gw-held", true);
    expect(first?.findings.some((f) => f.kind === "FORK" && f.where.startsWith("held"))).toBe(true);
    expect(second?.read).toBe(2);
    expect(second?.findings.some((f) => f.kind === "FORK" && f.where.startsWith("stream"))).toBe(true);
  }, 60_000);
});

describe("a witness that may not look up the subject's last message", () => {
  let server: NatsServerHandle;
  let admin: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer({ config: `authorization { users: [ {user: admin, password: admin}, {user: w, password: w, permissions: { publish: { deny: ["$JS.API.STREAM.MSG.GET.>"] } } } ] }\nno_auth_user: w\n` });
    admin = await connect({ servers: server.url, user: "admin", pass: "admin" });
    await ensureBus(admin);
  });
  afterAll(async () => {
    await admin?.close();
    await server?.stop();
  });

  it("its second pass is not OK with nothing read: the failed lookup is an error (exit 2), never 'nothing new'", async () => {
    const id = "gw-mg";
    const a = await GatewayLog.open(id, join(dir, "mg-a"));
    const b = await GatewayLog.open(id, join(dir, "mg-b"));
    try {
      const a4 = await a.grow(4, "p");
      await b.grow(4, "p");
      const a9 = await a.grow(5, "a1");
      const b9 = await b.grow(5, "b1");
      const js = jetstream(admin);
      await js.publish(SUBJECTS.checkpoint(id), JSON.stringify(a4));
      await js.publish(SUBJECTS.checkpoint(id), JSON.stringify(a9));
      const io = captureIo();
      const p = runAudit(["witness", "--nats", server.url, "--gateway-id", id, "--gateway-key", GW_KEY.keyId, "--out", join(dir, "mg.json"), "--json", "--timeout-ms", "4000", "--no-consistency", "--follow", "--cycles", "2", "--interval-ms", "2000"], io);
      await waitFirstPass(io);
      await js.publish(SUBJECTS.checkpoint(id), JSON.stringify(b9)); // the fork, after pass 1
      const code = await p;
      expect(code, `${io.stdout()}\n${io.stderr()}`).not.toBe(0);
      expect(passes(io.stdout()).filter((x) => x.ok && x.read === 0)).toEqual([]);
      expect(io.stderr()).toMatch(/cannot read the last message of failclosed\.audit\.checkpoint\.gw-mg/);
    } finally {
      await a.close();
      await b.close();
    }
  }, 60_000);
});
