// Reading bytes that must already be RFC 8785 canonical (audit records, on open and in replay).
//
// The reference reading is parseStrict (refuses every I-JSON violation) followed by "the
// canonical form of the value is exactly these bytes". Replay and store recovery do that for
// every record, and the JS parser was the largest single cost of replay. So a fast path runs
// first and may only *accept*: V8's native JSON.parse, then the same canonical-equality check.
// Anything it does not accept goes through the reference path, which gives the precise error.
//
// Why a fast accept implies a reference accept with the same value:
// - the bytes decoded as strict UTF-8 (fatal decoder), like parseStrict;
// - canonicalize(v) === text, and canonical text has no whitespace, no BOM, unique sorted keys
//   (a duplicate key would have been collapsed by JSON.parse and the lengths would differ),
//   well-formed strings (canonicalize refuses lone surrogates), safe integers only, and
//   shortest number forms, which parse to the same numbers in both readers;
// - nesting is limited with the same count as parseStrict's maxDepth (canonicalize maxNesting);
// - the one key JSON.parse treats differently from parseStrict, "__proto__", is never taken
//   on the fast path: any text that mentions it goes to the reference path.
// test/canonical/canonical-parse.test.ts checks the equivalence on mutated records.
import { canonicalize, type JsonValue } from "./jcs.ts";
import { CanonicalError } from "./errors.ts";
import { parseStrict } from "./strict-parse.ts";

const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export interface CanonicalParseOptions {
  readonly maxBytes: number;
  readonly maxDepth: number;
}

/** The reference: strict parse, then canonical equality. Throws CanonicalError. */
export function parseCanonicalReference(bytes: Uint8Array, opts: CanonicalParseOptions): JsonValue {
  const value = parseStrict(bytes, opts);
  if (canonicalize(value) !== Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8")) {
    throw new CanonicalError("NOT_CANONICAL", "bytes are not RFC 8785 canonical");
  }
  return value;
}

/** Parse bytes that must be RFC 8785 canonical I-JSON. Throws CanonicalError (stable code). */
export function parseCanonical(bytes: Uint8Array, opts: CanonicalParseOptions): JsonValue {
  if (bytes.byteLength <= opts.maxBytes) {
    let text: string | undefined;
    try {
      text = fatal.decode(bytes);
    } catch {
      text = undefined;
    }
    if (text !== undefined && !text.includes('"__proto__"')) {
      try {
        const value = JSON.parse(text) as JsonValue;
        if (canonicalize(value, { maxNesting: opts.maxDepth }) === text) return value;
      } catch {
        // Not accepted here: the reference path below names the problem.
      }
    }
  }
  return parseCanonicalReference(bytes, opts);
}
