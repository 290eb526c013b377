// Child task ids live in their parent's namespace (core/child-task-id.ts): the derivation is pinned
// (agents and auditors in other languages recompute it), fixed length at any depth, always a task
// id, and a child id of one parent is never taken for another's.
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CHILD_TASK_PREFIX_LENGTH, MAX_CHILD_LABEL_LENGTH, childTaskId, hasChildTaskIdForm, isChildTaskIdOf } from "../../src/core/child-task-id.ts";
import { TASK_ID_RE } from "../../src/nats/contract.ts";
import { newChildTaskId, newTaskId } from "../../src/runtime/runtime.ts";

const taskIdArb = fc.stringMatching(/^[A-Za-z0-9_-]{1,128}$/);
const labelArb = fc.stringMatching(new RegExp(`^[A-Za-z0-9_-]{1,${MAX_CHILD_LABEL_LENGTH}}$`));

describe("childTaskId", () => {
  it("is the pinned form: 22 base64url chars of SHA-256(domain tag ‖ 0x00 ‖ parent id), '_', the label", () => {
    // A known answer, so the form cannot drift without this line changing with it.
    expect(childTaskId("t-parent", "step-1")).toBe("eyxXDLghdVvW3C4VJO-M16_step-1");
    // And the same from an independent reading of the rule.
    const parent = newTaskId();
    const prefix = createHash("sha256").update(`failclosed/child-task/v1\u0000${parent}`).digest("base64url").slice(0, 22);
    expect(childTaskId(parent, "x")).toBe(`${prefix}_x`);
  });

  it("is deterministic, and one parent's children share one prefix whatever their labels", () => {
    const parent = newTaskId();
    expect(childTaskId(parent, "a")).toBe(childTaskId(parent, "a"));
    expect(childTaskId(parent, "a")).not.toBe(childTaskId(parent, "b"));
    expect(childTaskId(parent, "a").slice(0, CHILD_TASK_PREFIX_LENGTH)).toBe(childTaskId(parent, "b").slice(0, CHILD_TASK_PREFIX_LENGTH));
    expect(childTaskId(parent, "a").slice(0, CHILD_TASK_PREFIX_LENGTH)).not.toBe(childTaskId(newTaskId(), "a").slice(0, CHILD_TASK_PREFIX_LENGTH));
  });

  it("nested children derive from their own parent, and ids do not grow with depth", () => {
    const root = newTaskId();
    let parent = root;
    let grandparent: string | undefined;
    for (let depth = 1; depth <= 8; depth++) {
      const next = childTaskId(parent, "step");
      expect(isChildTaskIdOf(parent, next)).toBe(true);
      // Only the direct parent's namespace: not the grandparent's, not the root's.
      if (grandparent !== undefined) expect(isChildTaskIdOf(grandparent, next)).toBe(false);
      expect(isChildTaskIdOf(root, next)).toBe(depth === 1);
      expect(next).toHaveLength(CHILD_TASK_PREFIX_LENGTH + 1 + "step".length);
      grandparent = parent;
      parent = next;
    }
  });

  it("refuses a label or parent id that would not make a task id, with a TypeError", () => {
    const parent = newTaskId();
    for (const label of ["", "a.b", "a b", "a*", "a>", "é", "x".repeat(MAX_CHILD_LABEL_LENGTH + 1), 7, undefined]) {
      expect(() => childTaskId(parent, label as string), JSON.stringify(label)).toThrow(TypeError);
    }
    for (const p of ["", "p.q", "x".repeat(129), null]) expect(() => childTaskId(p as string, "a"), JSON.stringify(p)).toThrow(TypeError);
    // The longest label still makes a task id of exactly 128 characters.
    const longest = childTaskId(parent, "x".repeat(MAX_CHILD_LABEL_LENGTH));
    expect(longest).toHaveLength(128);
    expect(TASK_ID_RE.test(longest)).toBe(true);
  });

  it("always makes a task id in its parent's namespace, and never in another parent's (property)", () => {
    fc.assert(
      fc.property(taskIdArb, taskIdArb, labelArb, (parent, other, label) => {
        const id = childTaskId(parent, label);
        expect(TASK_ID_RE.test(id)).toBe(true);
        expect(isChildTaskIdOf(parent, id)).toBe(true);
        if (other !== parent) expect(isChildTaskIdOf(other, id)).toBe(false);
      }),
      { numRuns: 500 },
    );
  });
});

describe("isChildTaskIdOf", () => {
  it("a child id of parent A is not accepted for parent B", () => {
    const a = newTaskId();
    const b = newTaskId();
    expect(isChildTaskIdOf(a, childTaskId(a, "job"))).toBe(true);
    expect(isChildTaskIdOf(b, childTaskId(a, "job"))).toBe(false);
  });

  it("refuses root ids, the parent itself, near misses and non-strings: false, never an exception", () => {
    const parent = newTaskId();
    const good = childTaskId(parent, "job");
    const prefix = good.slice(0, CHILD_TASK_PREFIX_LENGTH);
    // A random root id is too short to be anyone's child.
    expect(isChildTaskIdOf(parent, newTaskId())).toBe(false);
    expect(isChildTaskIdOf(parent, parent)).toBe(false);
    expect(isChildTaskIdOf(parent, prefix)).toBe(false);
    expect(isChildTaskIdOf(parent, `${prefix}_`)).toBe(false); // no label
    expect(isChildTaskIdOf(parent, `${prefix}-job`)).toBe(false); // not the separator
    expect(isChildTaskIdOf(parent, `${prefix}_job.x`)).toBe(false); // not a task id
    expect(isChildTaskIdOf(parent, `${prefix}_${"x".repeat(MAX_CHILD_LABEL_LENGTH + 1)}`)).toBe(false); // too long
    expect(isChildTaskIdOf(parent, `${prefix.slice(0, -1)}${prefix.endsWith("A") ? "B" : "A"}_job`)).toBe(false);
    expect(isChildTaskIdOf(`${parent}x`, good)).toBe(false);
    for (const junk of [undefined, null, 1, {}, [good], `${good}\n`]) {
      expect(isChildTaskIdOf(parent, junk)).toBe(false);
      expect(isChildTaskIdOf(junk, good)).toBe(false);
    }
  });
});

describe("hasChildTaskIdForm", () => {
  it("holds for every child id (property), and for no id newTaskId makes: an authority grants no root id of this form", () => {
    fc.assert(fc.property(taskIdArb, labelArb, (parent, label) => hasChildTaskIdForm(childTaskId(parent, label))));
    for (let i = 0; i < 100; i++) expect(hasChildTaskIdForm(newTaskId())).toBe(false);
    expect(hasChildTaskIdForm(`${"a".repeat(CHILD_TASK_PREFIX_LENGTH)}_`)).toBe(false);
    expect(hasChildTaskIdForm(`${"a".repeat(CHILD_TASK_PREFIX_LENGTH)}-x`)).toBe(false);
    expect(hasChildTaskIdForm(`${"a".repeat(CHILD_TASK_PREFIX_LENGTH)}_x`)).toBe(true);
    for (const v of [undefined, 1, "", "a.b", `${"a".repeat(CHILD_TASK_PREFIX_LENGTH)}_x.y`]) expect(hasChildTaskIdForm(v)).toBe(false);
  });
});

describe("newChildTaskId", () => {
  it("is a fresh id in the parent's namespace each time", () => {
    const parent = newTaskId();
    const a = newChildTaskId(parent);
    const b = newChildTaskId(parent);
    expect(a).not.toBe(b);
    expect(isChildTaskIdOf(parent, a)).toBe(true);
    expect(isChildTaskIdOf(parent, b)).toBe(true);
    expect(() => newChildTaskId("p.q")).toThrow(TypeError);
  });
});
