// `failclosed gateway` as a real process: it serves tasks from the bus, stops gracefully on
// SIGTERM with exit 0, and leaves an audit log that an auditor replays clean.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LevelBackend } from "../../src/audit/backend.ts";
import { backendLogSource } from "../../src/audit/log-source.ts";
import { replay } from "../../src/audit/replay.ts";
import { readKeyFile } from "../../src/cli/keys.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { DEFAULT_POLICY } from "../../src/policy/default-policy.ts";
import { Authority } from "../../src/runtime/authority.ts";
import { Runtime, newTaskId } from "../../src/runtime/runtime.ts";
import { namedKey, namedNonce } from "../../src/testkit/world.ts";
import { MAIN, TSX, startGatewayProcess } from "./gateway-process.ts";


describe("failclosed gateway (process)", () => {
  let server: NatsServerHandle;
  let dir: string;
  beforeAll(async () => {
    server = await startNatsServer();
    dir = await mkdtemp(join(tmpdir(), "failclosed-gwsvc-"));
  });
  afterAll(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("serves a governed task, then shuts down gracefully on SIGTERM; its log replays clean", async () => {
    const authKey = namedKey("svc-authority");
    const authority = await Authority.connect({ natsUrl: server.url, key: authKey });
    await authority.publishPolicy(DEFAULT_POLICY);
    await authority.startHeartbeats(500);
    const { proc, logs, exited } = await startGatewayProcess(["--nats", server.url, "--data", dir, "--id", "gw-svc", "--authority", authKey.keyId]);
    expect(logs()).toContain("started on");

    // The service makes its own key: outcomes are taken unsigned here (what is tested is the service).
    const rt = await Runtime.connect({ natsUrl: server.url, outcomeTimeoutMs: 15_000, acceptUnsignedOutcomes: true });
    const agent = namedKey("svc-agent");
    const taskId = newTaskId();
    const now = Date.now();
    const { artifact } = await authority.grant({
      taskId,
      holder: agent.keyId,
      scope: { actions: ["read"], resources: ["reports/"], constraints: {} },
      validity: { notBefore: now - 1000, expiresAt: now + 60_000 },
      nonce: namedNonce(`svc-${taskId}`),
      attribution: { initiator: "test", reason: "service" },
    });
    const o = await rt.spawn({ agent, action: "read", resource: "reports/q1", args: { page: 1 }, chain: [artifact], taskId }).outcome;
    expect(o).toMatchObject({ verdict: "allow", status: "succeeded", gatewayId: "gw-svc" });
    expect(o.result).toEqual({ action: "read", resource: "reports/q1", args: { page: 1 } });

    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(logs()).toContain("stopped");
    await rt.close();
    await authority.close();

    const key = readKeyFile(join(dir, "gateway-key.json"));
    const backend = await LevelBackend.open(join(dir, "audit"));
    const r = await replay(backendLogSource(backend), { gatewayKeys: [key.keyId], authorities: [authKey.keyId], origin: "gw-svc" });
    await backend.close();
    expect(r.divergences).toEqual([]);
    expect(r.decisionsRederived).toBe(1);
    expect(r.checkpointsVerified).toBeGreaterThan(0);
  });

  it("with --json, every line it writes is one JSON object, its SIGTERM notice included, and a warning names the gateway once (found by an operator's review)", async () => {
    const own = await mkdtemp(join(tmpdir(), "failclosed-gwjson-"));
    try {
      const args = ["--nats", server.url, "--data", own, "--id", "gw-json", "--authority", namedKey("svc-authority").keyId];
      const once = await startGatewayProcess(args);
      once.proc.kill("SIGTERM");
      expect(await once.exited).toBe(0);
      // A new key (the old key file gone): the snapshot it wrote at shutdown is not this key's,
      // so the next start has a warning to give.
      await rm(join(own, "gateway-key.json"));
      const { proc, logs, exited } = await startGatewayProcess([...args, "--json"]);
      expect(logs()).toContain("started on");
      proc.kill("SIGTERM");
      expect(await exited).toBe(0);
      const lines = logs().split("\n").filter((l) => l.trim() !== "");
      const parsed = lines.map((l) => {
        try {
          return JSON.parse(l) as { msg?: unknown; level?: unknown; signal?: unknown };
        } catch {
          return { notJson: l };
        }
      });
      expect(parsed.filter((p) => "notJson" in p)).toEqual([]);
      expect(parsed.some((p) => "signal" in p && p.signal === "SIGTERM")).toBe(true);
      const warnings = parsed.filter((p) => "level" in p && p.level === "warn");
      expect(warnings.length).toBeGreaterThan(0);
      for (const w of warnings) expect(String((w as { msg?: unknown }).msg)).not.toMatch(/^\[gw-json\]/);
    } finally {
      await rm(own, { recursive: true, force: true });
    }
  });

  it("restarted on the same log, it reads its fold from the snapshot it wrote at shutdown", async () => {
    const { proc, logs, exited } = await startGatewayProcess(["--nats", server.url, "--data", dir, "--id", "gw-svc", "--authority", namedKey("svc-authority").keyId, "--snapshot-every", "5"]);
    const m = /audit log: (\d+) records, 0 folded on open after the snapshot at (\d+)/.exec(logs());
    expect(m, logs()).not.toBeNull();
    expect(m![1]).toBe(m![2]);
    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("refuses a --snapshot-every that is not a whole number (exit 2)", async () => {
    const proc = spawn(process.execPath, ["--import", TSX, MAIN, "gateway", "--nats", server.url, "--data", dir, "--snapshot-every", "-1"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    proc.stderr.on("data", (d: Buffer) => (err += d.toString()));
    expect(await new Promise<number | null>((r) => proc.once("exit", (c) => r(c)))).toBe(2);
    expect(err).toContain("--snapshot-every");
  });
});
