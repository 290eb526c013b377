// The exhaustive-switch fallback throws a TypeError naming what was unhandled, whatever the value:
// one JSON cannot show (a BigInt, a cycle) must not turn into another error or a silent pass.
import { describe, expect, it } from "vitest";
import { assertNever } from "../../src/infra/assert-never.ts";

const call = (x: unknown, what?: string) => () => assertNever(x as never, what);

describe("assertNever", () => {
  it("names the value as JSON", () => {
    expect(call({ kind: "later" }, "task event")).toThrow(new TypeError('unhandled task event {"kind":"later"}'));
  });
  it("a BigInt, a cycle and undefined still throw the TypeError", () => {
    const cycle: Record<string, unknown> = {};
    cycle["self"] = cycle;
    expect(call(10n)).toThrow(new TypeError("unhandled case 10"));
    expect(call(cycle)).toThrow(TypeError);
    expect(call(undefined)).toThrow(new TypeError("unhandled case undefined"));
  });
});
