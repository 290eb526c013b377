// docker-compose.yml, docker/nats.conf and docker/Dockerfile as a reviewer would check them: no
// Docker engine runs here, so the files are parsed and their contents asserted.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const text = (p: string): string => readFileSync(join(ROOT, p), "utf8");

type NatsConf = { [key: string]: string | NatsConf };

/**
 * The subset of the NATS config syntax the file uses: `key: value`, `key = value`, `key { … }`,
 * `#` comments. Strict: anything else fails the test rather than being skipped.
 */
function parseNatsConf(src: string): NatsConf {
  const root: NatsConf = {};
  const stack: NatsConf[] = [root];
  for (const [n, raw] of src.split("\n").entries()) {
    const line = raw.replace(/#.*$/, "").trim();
    if (line === "") continue;
    const top = stack[stack.length - 1]!;
    const block = /^([A-Za-z_][\w-]*)\s*[:=]?\s*\{$/.exec(line);
    const pair = /^([A-Za-z_][\w-]*)\s*[:=]\s*(.+?)\s*,?$/.exec(line);
    if (block) {
      const child: NatsConf = {};
      top[block[1]!] = child;
      stack.push(child);
    } else if (line === "}") {
      stack.pop();
      if (stack.length === 0) throw new Error(`nats.conf:${n + 1}: unbalanced }`);
    } else if (pair) {
      top[pair[1]!] = pair[2]!.replace(/^"(.*)"$/, "$1");
    } else {
      throw new Error(`nats.conf:${n + 1}: cannot parse ${JSON.stringify(line)}`);
    }
  }
  if (stack.length !== 1) throw new Error("nats.conf: unclosed block");
  return root;
}

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  stop_signal?: string;
}
const compose = parse(text("docker-compose.yml")) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const nats = compose.services["nats"]!;
const gateway = compose.services["gateway"]!;

describe("docker-compose.yml", () => {
  it("has exactly the nats and gateway services", () => {
    expect(Object.keys(compose.services).sort()).toEqual(["gateway", "nats"]);
  });

  it("runs NATS >= 2.10 with the repo's config, client and monitoring ports", () => {
    const m = /^nats:(\d+)\.(\d+)(?:[.-]|$)/.exec(nats.image ?? "");
    expect(m, nats.image).not.toBeNull();
    expect(Number(m![1]) > 2 || (Number(m![1]) === 2 && Number(m![2]) >= 10)).toBe(true);
    expect(nats.ports).toEqual(expect.arrayContaining(["4222:4222", "8222:8222"]));
    const cfgIndex = nats.command!.indexOf("--config");
    expect(cfgIndex).toBeGreaterThanOrEqual(0);
    const cfgPath = nats.command![cfgIndex + 1]!;
    expect(nats.volumes).toContain(`./docker/nats.conf:${cfgPath}:ro`);
    expect(nats.healthcheck?.test.join(" ")).toContain("8222/healthz?js-enabled-only=true");
  });

  it("keeps the JetStream store on a named volume", () => {
    const conf = parseNatsConf(text("docker/nats.conf"));
    const js = conf["jetstream"] as NatsConf;
    const storeDir = js["store_dir"] as string;
    const mount = nats.volumes!.map((v) => v.split(":")).find(([src, dst]) => src === "nats-data" && storeDir.startsWith(dst!));
    expect(mount, `store_dir ${storeDir} not under a volume`).toBeDefined();
    expect(compose.volumes).toHaveProperty("nats-data");
  });

  it("builds the gateway from this repo and starts it after NATS is healthy", () => {
    expect(gateway.build).toEqual({ context: ".", dockerfile: "docker/Dockerfile" });
    expect(existsSync(join(ROOT, gateway.build!.context, gateway.build!.dockerfile))).toBe(true);
    expect(gateway.depends_on).toEqual({ nats: { condition: "service_healthy" } });
    expect(gateway.command?.join(" ")).toMatch(/^gateway --nats nats:\/\/nats:4222 --data \/data\b/);
    expect(gateway.volumes).toContain("gateway-data:/data");
    expect(compose.volumes).toHaveProperty("gateway-data");
    expect(gateway.stop_signal).toBe("SIGTERM");
  });

  it("passes the gateway its trusted authorities from the environment, without making compose itself need them", () => {
    // `${VAR:?…}` would fail every compose command (compose interpolates the whole file), even
    // `up -d nats`; the gateway refuses to start without an authority on its own.
    expect(gateway.environment?.["FAILCLOSED_AUTHORITIES"]).toBe("${FAILCLOSED_AUTHORITIES:-}");
  });
});

describe("docker/nats.conf", () => {
  const conf = parseNatsConf(text("docker/nats.conf"));
  it("enables JetStream with sync_interval always", () => {
    expect(conf["jetstream"]).toBeTypeOf("object");
    expect((conf["jetstream"] as NatsConf)["sync_interval"]).toBe("always");
  });
  it("listens on 4222 with monitoring on 8222", () => {
    expect(conf["port"]).toBe("4222");
    expect(conf["http_port"]).toBe("8222");
  });
});

describe("docker/Dockerfile", () => {
  const df = text("docker/Dockerfile");
  it("installs with npm ci on node:20-slim and runs the gateway command through tsx", () => {
    expect(df).toMatch(/^FROM node:20-slim$/m);
    expect(df).toMatch(/^RUN npm ci\b/m);
    expect(df).toMatch(/^ENTRYPOINT \["node", "--import", "tsx", "src\/cli\/main\.ts"\]$/m);
    expect(df).toMatch(/^CMD \["gateway", "--nats", "nats:\/\/nats:4222", "--data", "\/data"\]$/m);
    expect(df).toMatch(/^USER node$/m);
  });
});
