// Child task ids live in their parent's namespace. A spawn lineage names the child's task id, and
// the first submission to reach the task-id claim takes that id for good; if a parent's handler
// could name any id, it could name another holder's root task id (known in advance: its origin
// lineage is on the evidence stream) and get it denied REPLAYED. So the gateway signs a spawn
// lineage only for a child id derived from the parent's (gateway.ts #spawnEvent).
//
// Form: `<prefix>_<label>`, where `<prefix>` is the first 22 base64url characters (132 bits) of
// SHA-256("failclosed/child-task/v1" ‖ 0x00 ‖ UTF-8 parent task id), and `<label>` is the
// caller's, subject-safe and long enough to make the whole id at most 128 characters (TASK_ID_RE).
//   - Fixed length: a grandchild's prefix is derived from its parent's whole id, so ids do not
//     grow with depth, and a prefix is told apart from a label by its position alone (the
//     base64url alphabet holds '_' and '-' too).
//   - Only a preimage of 132 bits of SHA-256 puts a chosen id in a chosen parent's namespace:
//     to name a victim's id, a parent would need a task id of its own whose prefix is the
//     victim's first 22 characters. A random root id (newTaskId: "t-" and 16 characters) is too
//     short to fall in any namespace at all; another task's child id, only by that preimage too.
//   - Root ids never have this form: an authority grants none (hasChildTaskIdForm), or a root grant
//     could name a labelled child's id, predictable from its parent's, and take it first.
//   - The domain tag keeps these hashes apart from every other SHA-256 the system takes (content
//     ids, Merkle leaves, signing inputs), and names a version should the form ever change.
// Recorded logs and `decide` are untouched: the rule binds honest gateways when they sign, so
// logs with children named any other way still replay.
import { toB64u } from "../crypto/base64url.ts";
import { sha256 } from "../crypto/hash.ts";
import { TASK_ID_RE } from "../nats/contract.ts";

/** The domain tag of the child-id prefix hash (followed by a 0x00 byte, like the signing tags). */
export const CHILD_TASK_DOMAIN = "failclosed/child-task/v1";

/** Length of the prefix a child id starts with: 22 base64url characters, 132 bits. */
export const CHILD_TASK_PREFIX_LENGTH = 22;

/** The most a label may have: the whole id, prefix and '_' included, fits in TASK_ID_RE's 128. */
export const MAX_CHILD_LABEL_LENGTH = 128 - CHILD_TASK_PREFIX_LENGTH - 1;

const LABEL_RE = new RegExp(`^[A-Za-z0-9_-]{1,${MAX_CHILD_LABEL_LENGTH}}$`);
const encoder = new TextEncoder();
const DOMAIN_BYTES = encoder.encode(`${CHILD_TASK_DOMAIN}\u0000`);

/** The namespace prefix of `parentTaskId`'s children. The caller has checked it is a task id. */
function prefixOf(parentTaskId: string): string {
  const id = encoder.encode(parentTaskId);
  const input = new Uint8Array(DOMAIN_BYTES.length + id.length);
  input.set(DOMAIN_BYTES);
  input.set(id, DOMAIN_BYTES.length);
  return toB64u(sha256(input)).slice(0, CHILD_TASK_PREFIX_LENGTH);
}

/**
 * The task id of `parentTaskId`'s child labelled `label`: `<prefix>_<label>`, the same for the same
 * two inputs. Throws TypeError when `parentTaskId` is not a task id (TASK_ID_RE) or `label` is not
 * 1 to MAX_CHILD_LABEL_LENGTH letters, digits, '_' or '-' (caller mistakes). A label unique among
 * one parent's children makes the id unique: a task id runs once cluster-wide. Runtime.child picks
 * a random one when given none.
 */
export function childTaskId(parentTaskId: string, label: string): string {
  if (typeof parentTaskId !== "string" || !TASK_ID_RE.test(parentTaskId)) throw new TypeError(`childTaskId: parent task id ${JSON.stringify(parentTaskId)} is not a subject-safe token (${String(TASK_ID_RE)})`);
  if (typeof label !== "string" || !LABEL_RE.test(label)) throw new TypeError(`childTaskId: label ${JSON.stringify(label)} is not 1 to ${MAX_CHILD_LABEL_LENGTH} letters, digits, '_' or '-'`);
  return `${prefixOf(parentTaskId)}_${label}`;
}

/**
 * Whether `taskId` has the form of a child task id (`<22 characters>_<label>`), whoever's
 * namespace it may be in: every 22 characters of a task id are base64url, so any such prefix may
 * be some task's. An authority grants no root task with such an id (runtime/authority.ts grant):
 * labelled child ids are predictable from their parent's, and a root grant naming one would let
 * its holder run first and take that child's task id (found by review). False for anything that
 * is not a task id.
 */
export function hasChildTaskIdForm(taskId: unknown): boolean {
  return typeof taskId === "string" && TASK_ID_RE.test(taskId) && taskId.length > CHILD_TASK_PREFIX_LENGTH + 1 && taskId[CHILD_TASK_PREFIX_LENGTH] === "_";
}

/**
 * Whether `childId` is in `parentTaskId`'s namespace (a childTaskId of it, whatever its label).
 * False, never an exception, for anything else: values that are not strings or not task ids
 * included (gateways call this on ids a handler chose).
 */
export function isChildTaskIdOf(parentTaskId: unknown, childId: unknown): boolean {
  if (typeof parentTaskId !== "string" || typeof childId !== "string") return false;
  if (!TASK_ID_RE.test(parentTaskId) || !hasChildTaskIdForm(childId)) return false;
  return childId.slice(0, CHILD_TASK_PREFIX_LENGTH) === prefixOf(parentTaskId);
}
