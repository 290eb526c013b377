// The one-line error still says why: a gateway start on a data dir whose audit log another
// gateway holds names the held lock (the cause chain is printed, with or without FAILCLOSED_DEBUG).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Level } from "level";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readKeyFile } from "../../src/cli/keys.ts";
import { startNatsServer, type NatsServerHandle } from "../../src/infra/nats-launcher.ts";
import { cli } from "./support.ts";

let server: NatsServerHandle;
let dir: string;
let held: Level<string, string>;
beforeAll(async () => {
  server = await startNatsServer();
  dir = await mkdtemp(join(tmpdir(), "fc-err-"));
  // "another gateway" holding the audit log of this data dir
  held = new Level<string, string>(join(dir, "data", "audit"));
  await held.open();
});
afterAll(async () => {
  await held.close();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
});

describe("one-line errors keep the reason", () => {
  for (const debug of [false, true]) {
    it(`gateway on a data dir already in use (FAILCLOSED_DEBUG=${debug ? 1 : "unset"}) says why`, async () => {
      expect((await cli("keys", "generate", "--out", join(dir, `authority-${debug}.json`))).code).toBe(0);
      const authority = readKeyFile(join(dir, `authority-${debug}.json`)).keyId;
      const saved = process.env["FAILCLOSED_DEBUG"];
      if (debug) process.env["FAILCLOSED_DEBUG"] = "1";
      else delete process.env["FAILCLOSED_DEBUG"];
      try {
        const r = await cli("gateway", "--nats", server.url, "--data", join(dir, "data"), "--authority", authority);
        expect(r.code).toBe(2);
        // The reason LevelDB gave (the lock is held) must reach the operator somewhere.
        expect(r.err, r.err).toMatch(/lock/i);
      } finally {
        if (saved === undefined) delete process.env["FAILCLOSED_DEBUG"];
        else process.env["FAILCLOSED_DEBUG"] = saved;
      }
    });
  }
});
