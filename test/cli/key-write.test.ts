// A key file is written whole or not at all: a failed --force overwrite leaves the previous key
// file as it was (written to a temp file, synced, renamed).
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { readKeyFile } from "../../src/cli/keys.ts";

const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const TSX = import.meta.resolve("tsx");

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "failclosed-key-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sh = (script: string): Promise<{ code: number; stderr: string }> =>
  new Promise((resolve) => {
    execFile("bash", ["-c", script], { cwd: dir, timeout: 30_000 }, (err, _stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, stderr }));
  });

it("a failed --force overwrite leaves the previous key file whole", async () => {
  const node = `"${process.execPath}" --import "${TSX}" "${MAIN}"`;
  expect((await sh(`${node} keys generate --out key.json`)).code).toBe(0);
  const before = readKeyFile(join(dir, "key.json")).keyId;
  // A write that cannot complete (here: a file-size limit of 0, as on a full disk).
  const r = await sh(`ulimit -f 0; exec ${node} keys generate --force --out key.json`);
  expect(r.code).not.toBe(0);
  const text = await readFile(join(dir, "key.json"), "utf8");
  expect(text.length, "the old key file was truncated before the new key was written").toBeGreaterThan(0);
  expect(readKeyFile(join(dir, "key.json")).keyId).toBe(before);
});
