// Found by review (a user's journey through the API): a second runtime on a data directory in use
// failed with BACKEND_IO, the code of a failing disk. A directory another open holds is now its
// own code, so a caller can tell "in use" from "broken".
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { BackendError, LevelBackend } from "../../src/audit/backend.ts";

it("opening a LevelDB directory another open holds fails with BackendError BACKEND_LOCKED; once it is closed, it opens", async () => {
  const dir = await mkdtemp(join(tmpdir(), "failclosed-locked-"));
  try {
    const first = await LevelBackend.open(dir);
    const e = await LevelBackend.open(dir).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(BackendError);
    expect(e).toMatchObject({ code: "BACKEND_LOCKED" });
    expect((e as Error).message).toMatch(/^BACKEND_LOCKED: LevelDB at .* is in use/);
    await first.close();
    const again = await LevelBackend.open(dir);
    await again.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it("a path that cannot be a LevelDB directory is still BACKEND_IO", async () => {
  const dir = await mkdtemp(join(tmpdir(), "failclosed-locked-"));
  try {
    const e = await LevelBackend.open(join(dir, "missing"), { createIfMissing: false }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toMatchObject({ name: "BackendError", code: "BACKEND_IO" });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
