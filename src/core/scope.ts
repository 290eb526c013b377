// Delegation narrows and never widens (the Biscuit/UCAN attenuation rule), checked per field.
import type { ArtifactPayload, ArtifactScope, NumericConstraint } from "./types.ts";

/**
 * Resource coverage by path segment: a pattern covers the path it names and every path under
 * it. "payments" covers "payments", "payments/" and "payments/transfer"; "payments/" covers
 * "payments/" and "payments/transfer" but not "payments"; neither covers "paymentsx". A pattern
 * never covers, and is never covered by, an ambiguous path (see ambiguousPath), so
 * "payments/../admin" or "payments/%2e%2e/admin" cannot sneak past a prefix match.
 */
export function resourceCovers(pattern: string, resource: string): boolean {
  if (ambiguousPath(resource) || ambiguousPath(pattern)) return false;
  return pattern === resource || resource.startsWith(prefixOf(pattern));
}

// Policy: resources are opaque names compared as strings, but an action handler (or whatever it
// calls) may decode or normalise them. So a path that something downstream could read as a
// different path is refused outright: a "." or ".." segment; "%" (percent-encoding: "%2e%2e",
// "..%2f"); "\" (a separator on some systems); control characters; and anything NFKC changes
// (fullwidth "．．", the two-dot leader "‥", and every other compatibility spelling).
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const AMBIGUOUS_CHARS = /[%\\\u0000-\u001f\u007f-\u009f]/;

/** A path that some reader could take for another: never covered, never covering. */
export function ambiguousPath(path: string): boolean {
  if (AMBIGUOUS_CHARS.test(path) || path.normalize("NFKC") !== path) return true;
  return path.split("/").some((s) => s === "." || s === "..");
}

export function scopeAllows(scope: ArtifactScope, action: string, resource: string): boolean {
  return scope.actions.includes(action) && scope.resources.some((p) => resourceCovers(p, resource));
}

/** Does `child` bound at most what `parent` bounds? Missing bounds are unbounded. */
function constraintWithin(child: NumericConstraint | undefined, parent: NumericConstraint): boolean {
  if (!child) return false;
  if (parent.max !== undefined && (child.max === undefined || child.max > parent.max)) return false;
  if (parent.min !== undefined && (child.min === undefined || child.min < parent.min)) return false;
  return true;
}

/** Why `child` widens `parent`, or undefined when it only narrows. */
export function wideningReason(parent: ArtifactPayload, child: ArtifactPayload): string | undefined {
  for (const a of child.scope.actions) {
    if (!parent.scope.actions.includes(a)) return `action "${a}" not in parent scope`;
  }
  for (const r of child.scope.resources) {
    // A child pattern is narrower when every path it covers, the parent covers: the path the
    // pattern names, and everything below it (every path under the child's prefix is under
    // the parent's exactly when the parent's prefix begins the child's). "payments" and
    // "payments/" are different paths: neither pattern stands in for the other.
    if (!parent.scope.resources.some((p) => resourceCovers(p, r) && prefixOf(r).startsWith(prefixOf(p)))) {
      return `resource "${r}" not within parent scope`;
    }
  }
  for (const [arg, bound] of Object.entries(parent.scope.constraints)) {
    if (!constraintWithin(Object.hasOwn(child.scope.constraints, arg) ? child.scope.constraints[arg] : undefined, bound)) return `constraint on "${arg}" loosened or dropped`;
  }
  if (child.validity.notBefore < parent.validity.notBefore || child.validity.expiresAt > parent.validity.expiresAt) {
    return "validity window wider than parent's";
  }
  const pb = parent.bindings;
  const cb = child.bindings;
  if (pb.gateways && (!cb.gateways || cb.gateways.some((g) => !pb.gateways?.includes(g)))) return "gateway binding widened";
  if (pb.agentCodeDigest !== undefined && cb.agentCodeDigest !== pb.agentCodeDigest) return "agent code binding dropped";
  for (const [k, v] of Object.entries(pb.environment ?? {})) {
    if (cb.environment?.[k] !== v) return `environment binding "${k}" dropped`;
  }
  if (child.policy.digest !== parent.policy.digest) return "policy differs from parent's";
  return undefined;
}

/** The prefix below which a pattern covers every longer path. */
function prefixOf(p: string): string {
  return p.endsWith("/") ? p : `${p}/`;
}

/** Every numeric constraint of `scope` holds for `args`; a constrained argument must be present. */
export function constraintViolation(scope: ArtifactScope, args: unknown): string | undefined {
  const entries = Object.entries(scope.constraints);
  if (entries.length === 0) return undefined;
  if (typeof args !== "object" || args === null || Array.isArray(args)) return "arguments are not an object";
  const record = args as Record<string, unknown>;
  for (const [name, bound] of entries) {
    const v = Object.hasOwn(record, name) ? record[name] : undefined;
    if (typeof v !== "number" || !Number.isFinite(v)) return `argument "${name}" missing or not a number`;
    if (bound.max !== undefined && v > bound.max) return `argument "${name}"=${v} over ${bound.max}`;
    if (bound.min !== undefined && v < bound.min) return `argument "${name}"=${v} under ${bound.min}`;
  }
  return undefined;
}
