// proveChain never anchors its watermark on a checkpoint added this run, even when the file's
// watermark names no held size: an added checkpoint is proved like any other.
import { expect, it } from "vitest";
import { proveChain } from "../../src/audit/witness.ts";
import type { Signed } from "../../src/crypto/signing.ts";
import type { CheckpointPayload } from "../../src/audit/records.ts";

const cp = (size: number, root: string): Signed<CheckpointPayload> => ({ payload: { kind: "failclosed/checkpoint/v1", origin: "gw", size, root, time: 0 } as unknown as CheckpointPayload, sig: "x" });

it("an added checkpoint is never covered by the watermark without a proof", async () => {
  const held50 = cp(50, "A".repeat(43));
  const added100 = cp(100, "B".repeat(43)); // a forked history: never proved to extend 50
  let asked = 0;
  const r = await proveChain(
    [held50, added100],
    100,
    new Set([100]),
    () => {
      asked++;
      return Promise.resolve({ ok: false as const, detail: "no answer" });
    },
    [],
  );
  expect({ consistentThrough: r.consistentThrough, asked }).toEqual({ consistentThrough: 50, asked: 1 });
});
