// Locates the public test vectors (never copied into the repo). CI sets
// FAILCLOSED_REQUIRE_VECTORS=1 so that a missing directory fails the run instead of skipping.
import { existsSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "vitest";

// <repo>/test/helpers/ → <repo>/../shared/vectors
const DEFAULT_DIR = fileURLToPath(new URL("../../../shared/vectors", import.meta.url));

/** The configured vectors directory (FAILCLOSED_VECTORS_DIR or the default beside the repo). */
export function configuredVectorsDir(): string {
  const env = process.env["FAILCLOSED_VECTORS_DIR"];
  return env !== undefined && env !== "" ? resolve(env) : DEFAULT_DIR;
}

/** The vectors directory when it exists, else undefined. */
export function vectorsDir(): string | undefined {
  const dir = configuredVectorsDir();
  return existsSync(dir) && statSync(dir).isDirectory() ? dir : undefined;
}

export function vectorsRequired(): boolean {
  return process.env["FAILCLOSED_REQUIRE_VECTORS"] === "1";
}

/**
 * A describe block that needs the vectors. `fn` receives the directory. When it is missing the
 * block fails (FAILCLOSED_REQUIRE_VECTORS=1) or is skipped with a message saying why.
 */
export function describeWithVectors(name: string, fn: (dir: string) => void): void {
  const dir = vectorsDir();
  if (dir !== undefined) {
    describe(name, () => fn(dir));
    return;
  }
  const message = `vectors dir not found at ${configuredVectorsDir()}; set FAILCLOSED_VECTORS_DIR`;
  if (vectorsRequired()) {
    describe(name, () => {
      it("has its public test vectors (FAILCLOSED_REQUIRE_VECTORS=1)", () => {
        throw new Error(message);
      });
    });
    return;
  }
  console.warn(`[skip] ${name}: ${message}`);
  describe(name, () => {
    it.skip(message, () => undefined);
  });
}
