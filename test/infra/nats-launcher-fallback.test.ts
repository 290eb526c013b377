// Debian and Ubuntu's nats-server package installs to /usr/sbin, which is not on a normal user's
// PATH there: the launcher looks in /usr/sbin and /usr/local/sbin when PATH has no nats-server.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { findNatsServer, NATS_SERVER_FALLBACKS, NatsServerNotFoundError, natsServerAvailable, startNatsServer } from "../../src/infra/nats-launcher.ts";

/** A Debian user's PATH (/etc/login.defs ENV_PATH): no sbin directories. */
const USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games";
const onUserPath = spawnSync("nats-server", ["--version"], { stdio: "ignore", env: { PATH: USER_PATH } }).status === 0;
const fallback = NATS_SERVER_FALLBACKS.find((p) => existsSync(p));

describe("nats-server launcher: where the binary is found", () => {
  const saved = process.env["PATH"];
  afterEach(() => {
    process.env["PATH"] = saved;
  });

  it.skipIf(onUserPath || fallback === undefined)("finds and starts the sbin nats-server when PATH has none", async () => {
    process.env["PATH"] = USER_PATH;
    expect(findNatsServer()).toBe(fallback);
    expect(natsServerAvailable()).toBe(true);
    const server = await startNatsServer();
    try {
      const nc = await connect({ servers: server.url });
      await nc.flush();
      await nc.close();
    } finally {
      await server.stop();
    }
  });

  it("an explicit bin is the only one tried: missing, it is a NatsServerNotFoundError naming it", async () => {
    const bin = "/nonexistent/dir/nats-server";
    expect(findNatsServer(bin)).toBeUndefined();
    expect(natsServerAvailable(bin)).toBe(false);
    const err = await startNatsServer({ bin }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NatsServerNotFoundError);
    expect(err).toMatchObject({ code: "NATS_SERVER_NOT_FOUND", name: "NatsServerNotFoundError" });
    expect((err as Error).message).toContain(bin);
    expect((err as Error).message).not.toContain("/usr/sbin/nats-server");
  });

  it("with nothing to run, the error says where it looked and how to install it", async () => {
    process.env["PATH"] = "/nonexistent";
    const err = fallback === undefined ? await startNatsServer().then(() => undefined, (e: unknown) => e) : new NatsServerNotFoundError();
    expect(err).toBeInstanceOf(NatsServerNotFoundError);
    const message = (err as Error).message;
    expect(message).toContain("nats-server on PATH");
    for (const p of NATS_SERVER_FALLBACKS) expect(message).toContain(p);
    expect(message).toContain("apt-get install -y nats-server");
    expect(message).toContain("NATS_URL");
  });
});
