// Gateway.registerAction sets an action's handler once: a second handler for a name, or a
// handler that is not a function, is a TypeError at registration, as with
// Runtime.registerAction, never a silent replacement or a failure found only after an allow
// has spent the task's nonce.
import { expect, it } from "vitest";
import type { ActionHandler } from "../../src/gateway/gateway.ts";
import { runtimeWorld } from "../runtime/support.ts";
import { worldPerTest } from "./one-gateway-world.ts";

const world = worldPerTest();

it("a second handler for a name is refused; the first one stays in effect", { timeout: 60_000 }, async () => {
  const w = await world();
  w.gw.registerAction("transfer", () => ({ h: 1 }));
  expect(() => w.gw.registerAction("transfer", () => ({ h: 2 }))).toThrow(TypeError);
  expect(() => w.gw.registerAction("transfer", () => ({ h: 2 }))).toThrow(/already has a handler/);
  const { outcome } = await w.run();
  expect(outcome).toMatchObject({ status: "succeeded", result: { h: 1 } });
});

it("a handler that is not a function, or a name that is not a non-empty string, is refused before any task", { timeout: 60_000 }, async () => {
  const w = await world();
  expect(() => w.gw.registerAction("transfer", { run: () => ({}) } as unknown as ActionHandler)).toThrow(TypeError);
  expect(() => w.gw.registerAction("transfer", undefined as unknown as ActionHandler)).toThrow(TypeError);
  expect(() => w.gw.registerAction("", () => ({}))).toThrow(TypeError);
  expect(() => w.gw.registerAction(7 as unknown as string, () => ({}))).toThrow(TypeError);
  // The refused registrations left the name free.
  expect(() => w.gw.registerAction("transfer", () => ({ ok: true }))).not.toThrow();
});

it("a name registered on the runtime's gateway is refused by Runtime.registerAction too", { timeout: 60_000 }, async () => {
  const rw = await runtimeWorld();
  try {
    rw.rt.gateway!.registerAction("transfer", () => ({ h: 1 }));
    expect(() => rw.rt.registerAction("transfer", () => ({ h: 2 }))).toThrow(/already has a handler/);
  } finally {
    await rw.close();
  }
});
