// A user's review: startNatsServer's failures must be typed (callers and scripts match on `code`)
// and must leave nothing behind — no temp dir holding the config text, no stray nats-server.
// Run against the real nats-server, through the public entry, as a user would call it.
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NatsServerNotFoundError, NatsServerStartError, startNatsServer } from "../../src/index.ts";

const PREFIX = "failclosed-nats-";

async function launcherDirs(): Promise<Set<string>> {
  return new Set((await readdir(tmpdir())).filter((n) => n.startsWith(PREFIX)));
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error("startNatsServer resolved; expected it to reject");
    },
    (e: unknown) => e,
  );
}

describe("startNatsServer: failures are typed and leave nothing behind", () => {
  // A private TMPDIR (os.tmpdir() reads it on each call), so suites starting servers in parallel
  // cannot add failclosed-nats-* dirs to the listing this test compares.
  const savedTmp = process.env["TMPDIR"];
  let privateTmp: string;
  beforeEach(async () => {
    privateTmp = await mkdtemp(join(tmpdir(), "failclosed-launcher-errors-"));
    process.env["TMPDIR"] = privateTmp;
  });
  afterEach(async () => {
    if (savedTmp === undefined) delete process.env["TMPDIR"];
    else process.env["TMPDIR"] = savedTmp;
    await rm(privateTmp, { recursive: true, force: true });
  });

  it("a config nats-server cannot parse: NatsServerStartError with its exit code and stderr, and its temp dir removed", async () => {
    expect(tmpdir()).toBe(privateTmp);
    const before = await launcherDirs();
    const err = await rejection(startNatsServer({ config: "port: {{{ not a config\n" }));

    expect(err).toBeInstanceOf(NatsServerStartError);
    expect(err).toMatchObject({ code: "NATS_SERVER_START", name: "NatsServerStartError" });
    const e = err as NatsServerStartError;
    expect(typeof e.exitCode).toBe("number");
    expect(e.exitCode).not.toBe(0);
    expect(e.stderr).toMatch(/parse error/i);
    expect(e.stderr.length).toBeLessThanOrEqual(4096);
    expect(e.message).toContain(e.stderr.trim());

    const leftBehind = [...(await launcherDirs())].filter((n) => !before.has(n));
    expect(leftBehind).toEqual([]);
  });

  it("a bin that does not exist: NatsServerNotFoundError with its code, not a start error, and no temp dir", async () => {
    const before = await launcherDirs();
    const err = await rejection(startNatsServer({ bin: "/nonexistent/dir/nats-server" }));

    expect(err).toBeInstanceOf(NatsServerNotFoundError);
    expect(err).toMatchObject({ code: "NATS_SERVER_NOT_FOUND", name: "NatsServerNotFoundError" });
    // Scripts tell "install nats-server" apart from "nats-server would not start" by class and code.
    expect(err).not.toBeInstanceOf(NatsServerStartError);

    const leftBehind = [...(await launcherDirs())].filter((n) => !before.has(n));
    expect(leftBehind).toEqual([]);
  });
});
