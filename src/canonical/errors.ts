/** Stable codes for input that is not canonical I-JSON. Scripts and auditors match on these. */
export type CanonicalErrorCode =
  | "TOO_LARGE"
  | "TOO_DEEP"
  | "INVALID_UTF8"
  | "SYNTAX"
  | "DUPLICATE_KEY"
  | "FORBIDDEN_KEY"
  | "LONE_SURROGATE"
  | "NON_FINITE"
  /** A number written non-zero that is too small for a double: it would read as 0. */
  | "UNDERFLOW"
  | "UNSAFE_INTEGER"
  | "NOT_JSON"
  | "NOT_CANONICAL";

export class CanonicalError extends Error {
  override readonly name = "CanonicalError";
  readonly code: CanonicalErrorCode;
  /** Character offset in the input where parsing stopped, when known. */
  readonly offset: number | undefined;
  constructor(code: CanonicalErrorCode, message: string, offset?: number) {
    super(`${code}: ${message}`);
    this.code = code;
    this.offset = offset;
  }
}
