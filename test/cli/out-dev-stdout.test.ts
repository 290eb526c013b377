// `--out /dev/stdout >> log` appends, as the shell set it up: the process's own streams named
// by path are written through their descriptor, never replaced by a renamed temp file.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it("failclosed revoke --out /dev/stdout >> log keeps what the log held", () => {
  dir = mkdtempSync(join(tmpdir(), "fc-stdout-"));
  const bin = join(process.cwd(), "bin/failclosed.mjs");
  const key = join(dir, "authority.json");
  execFileSync("node", [bin, "keys", "generate", "--out", key]);
  const log = join(dir, "revocations.log");
  writeFileSync(log, "EARLIER REVOCATION\n");
  execFileSync("bash", ["-c", `node "${bin}" revoke --authority "${key}" --key "${key}" --reason test --out /dev/stdout >> "${log}"`]);
  const text = readFileSync(log, "utf8");
  expect(text.startsWith("EARLIER REVOCATION\n"), text.slice(0, 200)).toBe(true);
}, 60_000);
