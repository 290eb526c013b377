// The README's promises, kept true: the ten-line tour runs as written against a real
// nats-server, and the two commands it gives exist in package.json.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startNatsServer, type NatsServerHandle } from "../src/infra/nats-launcher.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TSX = import.meta.resolve("tsx");

describe("README", () => {
  let server: NatsServerHandle;
  let dir: string;
  beforeAll(async () => {
    server = await startNatsServer();
    dir = await mkdtemp(join(tmpdir(), "failclosed-readme-"));
  });
  afterAll(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("names npm start and npm test, and package.json has both", async () => {
    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    expect(readme).toContain("npm ci && npm start");
    expect(readme).toContain("npm test");
    const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts["start"]).toMatch(/simulate/);
    expect(pkg.scripts["test"]).toBe("vitest run");
  });

  it("the ten-line tour runs as written, its task is allowed, and the process exits by itself", async () => {
    const readme = await readFile(join(ROOT, "README.md"), "utf8");
    const code = /## A governed task in ten lines\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(code).toBeDefined();
    // Run it from inside the package so `import … from "failclosed"` resolves to this checkout.
    const file = join(ROOT, `.readme-tour-${process.pid}.ts`);
    // No process.exit: the tour closes what it opened, and the process must end by itself.
    const body = `const natsUrl = process.env["NATS_URL"]!;\nprocess.chdir(${JSON.stringify(dir)});\n${code!}\n`;
    await writeFile(file, body);
    try {
      const out = await new Promise<string>((resolve, reject) => {
        execFile(process.execPath, ["--import", TSX, file], { env: { ...process.env, NATS_URL: server.url }, timeout: 60_000 }, (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
        );
      });
      expect(out.trim()).toBe("allow []");
    } finally {
      await rm(file, { force: true });
    }
  });
});
