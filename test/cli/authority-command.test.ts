// `failclosed authority`: what a command-line deployment needs so its gateways can allow anything
// at all: the policy published, the revocation feed kept fresh, revocations published; and what no
// gateway would take (another authority's revocation, a bad interval, no server) refused first.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../../src/cli/main.ts";
import type { CliIo } from "../../src/cli/io.ts";
import { readKeyFile } from "../../src/cli/keys.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { POLICY_KEY, KV_BUCKETS, SUBJECTS, STREAMS } from "../../src/nats/contract.ts";
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";

let server: NatsServerHandle;
let dir: string;
beforeAll(async () => {
  server = await startNatsServer();
  dir = await mkdtemp(join(tmpdir(), "fc-authority-cmd-"));
});
afterAll(async () => {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

function io(): CliIo & { stdout: () => string; stderr: () => string } {
  let out = "";
  let err = "";
  return { out: (s) => void (out += s), err: (s) => void (err += s), progressTTY: false, setExitCode: () => undefined, stdout: () => out, stderr: () => err };
}
const p = (f: string) => join(dir, f);

describe("failclosed authority", () => {
  it("publishes the policy, a heartbeat and a revocation file it signed, then exits with --once", async () => {
    expect(await runCli(["keys", "generate", "--out", p("authority.json")], io())).toBe(0);
    expect(await runCli(["keys", "generate", "--out", p("agent.json")], io())).toBe(0);
    const agent = readKeyFile(p("agent.json"));
    expect(await runCli(["revoke", "--authority", p("authority.json"), "--key", agent.keyId, "--reason", "left", "--out", p("rev.json")], io())).toBe(0);
    const o = io();
    expect(await runCli(["authority", "--nats", server.url, "--key", p("authority.json"), "--revoke", p("rev.json"), "--once"], o), o.stderr()).toBe(0);
    expect(o.stderr()).toMatch(/policy .* published on .*, version \d+/);
    const nc = await connect({ servers: server.url });
    try {
      const kv = await new Kvm(nc).open(KV_BUCKETS.policy);
      expect((await kv.get(POLICY_KEY))?.operation).toBe("PUT");
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(STREAMS.gov, { subjects_filter: ">" });
      expect(info.state.subjects?.[SUBJECTS.heartbeat]).toBe(1);
      expect(info.state.subjects?.[SUBJECTS.revocation]).toBe(1);
    } finally {
      await nc.close();
    }
  });

  it("refuses what no gateway would take, before publishing anything", async () => {
    expect(await runCli(["keys", "generate", "--out", p("other.json")], io())).toBe(0);
    expect(await runCli(["revoke", "--authority", p("other.json"), "--artifact", "A".repeat(43), "--reason", "x", "--out", p("other-rev.json")], io())).toBe(0);
    const o = io();
    expect(await runCli(["authority", "--nats", server.url, "--key", p("authority.json"), "--revoke", p("other-rev.json"), "--once"], o)).toBe(2);
    expect(o.stderr()).toMatch(/not by this authority/);
    const o2 = io();
    expect(await runCli(["authority", "--nats", server.url, "--key", p("authority.json"), "--heartbeat-ms", "5", "--once"], o2)).toBe(2);
    const o4 = io();
    expect(await runCli(["authority", "--nats", server.url, "--key", p("authority.json"), "--peer", "not-a-key", "--once"], o4)).toBe(2);
    expect(o4.stderr()).toMatch(/--peer "not-a-key"/);
    const o3 = io();
    expect(await runCli(["authority", "--nats", "nats://127.0.0.1:1", "--key", p("authority.json"), "--once"], o3)).toBe(2);
    expect(o3.stderr()).toMatch(/cannot reach NATS/);
    expect(o3.stderr()).not.toMatch(/\n\s+at /);
  });
});
