// The cause-chain walk the error checks share (BACKEND_LOCKED, a stream gone mid-setup, a submit
// the server refused) is bounded: a cause chain that loops back on itself ends, and what is not
// an Error ends it too.
import { expect, it } from "vitest";
import { causeChain } from "../../src/infra/error-causes.ts";

it("yields the error and its causes, outermost first, up to the bound, and stops at a non-Error", () => {
  const inner = new Error("inner");
  const outer = new Error("outer", { cause: new Error("middle", { cause: inner }) });
  expect([...causeChain(outer)].map((e) => e.message)).toEqual(["outer", "middle", "inner"]);
  expect([...causeChain(outer, 2)].map((e) => e.message)).toEqual(["outer", "middle"]);
  expect([...causeChain(new Error("x", { cause: "a string" }))].map((e) => e.message)).toEqual(["x"]);
  expect([...causeChain("not an error")]).toEqual([]);
});

it("a cause chain that loops back on itself ends at the bound", () => {
  const a = new Error("a");
  a.cause = a;
  expect([...causeChain(a)]).toHaveLength(8);
});
