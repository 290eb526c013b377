// Values the schemas let through but that are not I-JSON (a lone surrogate, an unsafe integer,
// a non-JSON key) are MALFORMED, named before any other check (DESIGN §2, §3), not an
// internal error.
import { describe, expect, it } from "vitest";
import { decide } from "../../src/core/decide.ts";
import { buildTask, inputFor, makeWorld } from "../../src/testkit/world.ts";

const w = makeWorld();

describe("decide: non-I-JSON evidence that passes the zod schema is MALFORMED", () => {
  it("lone surrogate in the request's action", () => {
    const i = inputFor(w, buildTask(w, { depth: 0 }));
    const r = structuredClone(i.request) as { payload: { action: string } };
    r.payload.action = "transfer\ud800";
    i.request = r;
    expect(decide(i).reasons).toEqual(["MALFORMED"]);
  });

  it("unsafe integer as a scope constraint bound", () => {
    const i = inputFor(w, buildTask(w, { depth: 0 }));
    const a = structuredClone(i.chain[0]) as { payload: { scope: { constraints: Record<string, { max?: number }> } } };
    a.payload.scope.constraints["amount"] = { max: 2 ** 60 };
    i.chain = [a];
    expect(decide(i).reasons).toEqual(["MALFORMED"]);
  });

  it("lone surrogate key in artifact metadata", () => {
    const i = inputFor(w, buildTask(w, { depth: 0 }));
    const a = structuredClone(i.chain[0]) as { payload: { metadata: Record<string, unknown> } };
    a.payload.metadata = { "k\udc00": 1 };
    i.chain = [a];
    expect(decide(i).reasons).toEqual(["MALFORMED"]);
  });
});
