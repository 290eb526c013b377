// writeOutFile (src/cli/io.ts): a key that appears while it writes is never overwritten
// without --force, and a path that is a symlink is written through, not replaced.
import { lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";

// A second process creating the key between writeOutFile's existence check and the moment it
// puts its own file in place (a link without --force, a rename with it): the mock does that, then
// carries on as asked.
let beforeRename: ((to: string) => void) | undefined;
let linkFails: string | undefined;
vi.mock("node:fs", async (orig) => {
  const real = await orig<typeof import("node:fs")>();
  return {
    ...real,
    renameSync: (from: string, to: string) => {
      beforeRename?.(to);
      return real.renameSync(from, to);
    },
    linkSync: (from: string, to: string) => {
      beforeRename?.(to);
      if (linkFails !== undefined) throw Object.assign(new Error(`${linkFails}: operation not permitted, link`), { code: linkFails });
      return real.linkSync(from, to);
    },
  };
});

const { writeOutFile } = await import("../../src/cli/io.ts");

let dir: string;
afterEach(() => {
  beforeRename = undefined;
  linkFails = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("writeOutFile", () => {
  it("without --force, never replaces a key another process wrote meanwhile", () => {
    dir = mkdtempSync(join(tmpdir(), "fc-wof-"));
    const key = join(dir, "authority.json");
    beforeRename = (to) => {
      if (to === key) writeFileSync(key, "THE OTHER PROCESS'S KEY", { mode: 0o600 });
    };
    let threw: unknown;
    try {
      writeOutFile(key, "MY KEY", { secret: true });
    } catch (e) {
      threw = e;
    }
    // writeOutFile refuses (the key exists by the time it would be put in place); the other key stays.
    expect(readFileSync(key, "utf8"), `writeOutFile ${threw === undefined ? "returned" : "threw"}`).toBe("THE OTHER PROCESS'S KEY");
    expect(String(threw)).toMatch(/exists; refusing to overwrite a key/);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("an --out path that is a symlink is written through, not replaced (e.g. /dev/stdout, a link into a secrets mount)", () => {
    dir = mkdtempSync(join(tmpdir(), "fc-wof-"));
    const real = join(dir, "real.json");
    const link = join(dir, "out.json");
    writeFileSync(real, "old");
    symlinkSync(real, link);
    writeOutFile(link, "new");
    expect(readFileSync(real, "utf8")).toBe("new");
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
  });

  it("on a filesystem without hard links, a new key is created in place, exclusively, 0600", () => {
    dir = mkdtempSync(join(tmpdir(), "fc-wof-"));
    const key = join(dir, "k.json");
    linkFails = "EPERM";
    writeOutFile(key, "MY KEY", { secret: true });
    expect(readFileSync(key, "utf8")).toBe("MY KEY");
    expect(statSync(key).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);
    // …and still never over an existing one.
    expect(() => writeOutFile(key, "OTHER", { secret: true })).toThrow(/exists/);
    expect(readFileSync(key, "utf8")).toBe("MY KEY");
  });
});
