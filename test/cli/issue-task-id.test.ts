// Found by an operator's review: `failclosed issue` made artifacts no gateway would ever run a
// task on (LINEAGE_BROKEN): a root artifact needs the origin lineage its authority signs naming
// the task, and the CLI had no way to make one. `issue --task-id` now signs it, writes it
// (--lineage-out) and publishes it on the task's evidence subject (--nats), as a grant does.
import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { childTaskId } from "../../src/core/child-task-id.ts";
import type { SignedArtifact, SignedLineage } from "../../src/core/types.ts";
import { fromB64u } from "../../src/crypto/base64url.ts";
import { verifySigned } from "../../src/crypto/signing.ts";
import { keyFileOf } from "../../src/cli/keys.ts";
import { newTaskId } from "../../src/runtime/runtime.ts";
import { startHarness, type Harness } from "../../src/testkit/harness.ts";
import { namedKey } from "../../src/testkit/world.ts";

const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const TSX = import.meta.resolve("tsx");
const agent = namedKey("agent-0");

function cli(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["--import", TSX, MAIN, ...args], { cwd, env: { ...process.env, NO_COLOR: "1" }, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : -1, stdout, stderr });
    });
  });
}

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("an artifact issued with --task-id and --nats runs that task; its lineage file verifies under the authority's key; without --task-id the CLI says the artifact runs nothing yet, and it does not", async () => {
  h = await startHarness();
  const hh = h;
  const ran: string[] = [];
  hh.gateways[0]!.registerAction("transfer", ({ taskId }) => (ran.push(taskId), { ok: true }));
  const dir = hh.dir;
  await writeFile(join(dir, "auth.json"), JSON.stringify(keyFileOf(namedKey("authority"), Date.now())));
  const base = ["issue", "--authority", "auth.json", "--holder", agent.keyId, "--actions", "transfer", "--resources", "payments/", "--valid-for", "1h"];

  const taskId = newTaskId();
  const r = await cli([...base, "--task-id", taskId, "--nats", hh.url, "--out", "chain.json", "--lineage-out", "lineage.json", "--json"], dir);
  expect(r.code, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout)).toMatchObject({ taskId, file: "chain.json", lineageFile: "lineage.json", lineagePublishedOn: `failclosed.evidence.${taskId}.lineage` });
  const chain = JSON.parse(await readFile(join(dir, "chain.json"), "utf8")) as SignedArtifact[];
  const lineage = JSON.parse(await readFile(join(dir, "lineage.json"), "utf8")) as SignedLineage;
  expect(lineage.payload).toMatchObject({ childTaskId: taskId });
  expect(verifySigned("lineage", lineage, fromB64u(namedKey("authority").keyId, 32)!)).toBe(true);
  const out = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain, taskId }).outcome;
  expect(out).toMatchObject({ verdict: "allow", status: "succeeded" });
  expect(ran).toEqual([taskId]);

  // Without --task-id: said on stderr, and the artifact indeed runs nothing.
  const bare = await cli([...base, "--out", "bare.json"], dir);
  expect(bare.code, bare.stderr).toBe(0);
  expect(bare.stderr).toContain("no --task-id");
  const other = newTaskId();
  const denied = await hh.runtime.spawn({ agent, action: "transfer", resource: "payments/transfer", args: { amount: 1 }, chain: JSON.parse(await readFile(join(dir, "bare.json"), "utf8")) as SignedArtifact[], taskId: other }).outcome;
  expect(denied).toMatchObject({ verdict: "deny", codes: expect.arrayContaining(["LINEAGE_BROKEN"]) as unknown });

  // Usage errors: a task id that is not one, or of a child's form; --nats without --task-id; a bus that is not there.
  expect((await cli([...base, "--task-id", "a.b"], dir)).code).toBe(2);
  // A root task id of a child id's form, refused as Authority.grant refuses it (found by review).
  const childForm = await cli([...base, "--task-id", childTaskId(newTaskId(), "c1"), "--nats", hh.url], dir);
  expect(childForm.code).toBe(2);
  expect(childForm.stderr).toContain("form of a child task id");
  expect((await cli([...base, "--nats", hh.url], dir)).code).toBe(2);
  const down = await cli([...base, "--task-id", newTaskId(), "--nats", "nats://127.0.0.1:1"], dir);
  expect(down.code).toBe(2);
  expect(down.stderr).toContain("cannot reach NATS");
}, 90_000);
