// A strict JSON reader for bytes that come off the wire. JSON.parse keeps the last of two
// duplicate keys and accepts lone surrogates; an attacker can use either to make two parties
// read one message differently, so every I-JSON violation is refused here, before any other
// check, with a stable code.
import { CanonicalError } from "./errors.ts";
import { isWellFormedString, type JsonValue } from "./jcs.ts";

export interface StrictParseOptions {
  /** Maximum input size in bytes (UTF-8). Default 256 KiB. */
  maxBytes?: number;
  /** Maximum nesting of arrays and objects. Default 64. */
  maxDepth?: number;
}

export const DEFAULT_MAX_BYTES = 256 * 1024;
export const DEFAULT_MAX_DEPTH = 64;

// Policy: keys that would reach Object.prototype when a consumer copies the object.
const FORBIDDEN_KEYS = new Set(["__proto__"]);

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

class Reader {
  pos = 0;
  constructor(
    readonly text: string,
    readonly maxDepth: number,
  ) {}

  fail(code: ConstructorParameters<typeof CanonicalError>[0], message: string): never {
    throw new CanonicalError(code, message, this.pos);
  }

  skipWs(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  value(depth: number): JsonValue {
    this.skipWs();
    const c = this.text[this.pos];
    switch (c) {
      case "{":
        return this.object(depth + 1);
      case "[":
        return this.array(depth + 1);
      case '"':
        return this.string();
      case "t":
        return this.literal("true", true);
      case "f":
        return this.literal("false", false);
      case "n":
        return this.literal("null", null);
      case undefined:
        return this.fail("SYNTAX", "unexpected end of input");
      default:
        if (c === "-" || (c >= "0" && c <= "9")) return this.number();
        return this.fail("SYNTAX", `unexpected character ${JSON.stringify(c)}`);
    }
  }

  literal<T extends JsonValue>(word: string, v: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail("SYNTAX", `expected ${word}`);
    this.pos += word.length;
    return v;
  }

  number(): number {
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.text);
    if (!m) return this.fail("SYNTAX", "malformed number");
    this.pos += m[0].length;
    const n = Number(m[0]);
    if (!Number.isFinite(n)) this.fail("NON_FINITE", `number ${m[0]} overflows`);
    // A non-zero number below the smallest double reads as 0: refused like one too large, not
    // taken as another value than the one written (RFC 7493 §2.2 asks for doubles' range).
    if (n === 0 && /[1-9]/.test(m[0].split(/[eE]/)[0] ?? "")) this.fail("UNDERFLOW", `number ${m[0]} underflows to 0`);
    // RFC 7493 §2.2: integers beyond ±(2^53−1) cannot be exchanged exactly.
    if (Number.isInteger(n) && !Number.isSafeInteger(n)) this.fail("UNSAFE_INTEGER", `integer ${m[0]} beyond ±(2^53−1)`);
    return n;
  }

  string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = "";
    let chunkStart = this.pos;
    for (;;) {
      if (this.pos >= t.length) this.fail("SYNTAX", "unterminated string");
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(chunkStart, this.pos);
        this.pos++;
        break;
      }
      if (c < 0x20) this.fail("SYNTAX", "raw control character in string");
      if (c === 0x5c) {
        out += t.slice(chunkStart, this.pos);
        const e = t[this.pos + 1];
        switch (e) {
          case '"':
            out += '"';
            break;
          case "\\":
            out += "\\";
            break;
          case "/":
            out += "/";
            break;
          case "b":
            out += "\b";
            break;
          case "f":
            out += "\f";
            break;
          case "n":
            out += "\n";
            break;
          case "r":
            out += "\r";
            break;
          case "t":
            out += "\t";
            break;
          case "u": {
            const hex = t.slice(this.pos + 2, this.pos + 6);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("SYNTAX", "bad \\u escape");
            out += String.fromCharCode(parseInt(hex, 16));
            this.pos += 4;
            break;
          }
          default:
            this.fail("SYNTAX", "bad escape");
        }
        this.pos += 2;
        chunkStart = this.pos;
        continue;
      }
      this.pos++;
    }
    // Surrogates may arrive raw or as \u escapes; check the decoded result once.
    if (!isWellFormedString(out)) this.fail("LONE_SURROGATE", "string holds an unpaired surrogate");
    return out;
  }

  array(depth: number): JsonValue[] {
    if (depth > this.maxDepth) this.fail("TOO_DEEP", `nesting over ${this.maxDepth}`);
    this.pos++;
    const out: JsonValue[] = [];
    this.skipWs();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth));
      this.skipWs();
      const c = this.text[this.pos];
      this.pos++;
      if (c === ",") continue;
      if (c === "]") return out;
      this.pos--;
      this.fail("SYNTAX", "expected , or ]");
    }
  }

  object(depth: number): { [k: string]: JsonValue } {
    if (depth > this.maxDepth) this.fail("TOO_DEEP", `nesting over ${this.maxDepth}`);
    this.pos++;
    const out: { [k: string]: JsonValue } = {};
    const seen = new Set<string>();
    this.skipWs();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWs();
      if (this.text[this.pos] !== '"') this.fail("SYNTAX", "expected a key");
      const key = this.string();
      if (seen.has(key)) this.fail("DUPLICATE_KEY", `duplicate key ${JSON.stringify(key)}`);
      if (FORBIDDEN_KEYS.has(key)) this.fail("FORBIDDEN_KEY", `key ${JSON.stringify(key)} is refused`);
      seen.add(key);
      this.skipWs();
      if (this.text[this.pos] !== ":") this.fail("SYNTAX", "expected :");
      this.pos++;
      out[key] = this.value(depth);
      this.skipWs();
      const c = this.text[this.pos];
      this.pos++;
      if (c === ",") continue;
      if (c === "}") return out;
      this.pos--;
      this.fail("SYNTAX", "expected , or }");
    }
  }
}

/** Parse I-JSON strictly. Throws CanonicalError (stable `code`) on any violation. */
export function parseStrict(input: string | Uint8Array, opts: StrictParseOptions = {}): JsonValue {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const maxDepth = opts.maxDepth ?? DEFAULT_MAX_DEPTH;
  let text: string;
  if (typeof input === "string") {
    // A UTF-16 string is at most 3 UTF-8 bytes per code unit; only measure when it could exceed.
    if (input.length * 3 > maxBytes && Buffer.byteLength(input, "utf8") > maxBytes) {
      throw new CanonicalError("TOO_LARGE", `input over ${maxBytes} bytes`);
    }
    text = input;
  } else {
    if (input.byteLength > maxBytes) throw new CanonicalError("TOO_LARGE", `input over ${maxBytes} bytes`);
    try {
      text = decoder.decode(input);
    } catch {
      throw new CanonicalError("INVALID_UTF8", "input is not valid UTF-8");
    }
  }
  if (text.charCodeAt(0) === 0xfeff) throw new CanonicalError("SYNTAX", "byte order mark", 0);
  const r = new Reader(text, maxDepth);
  const v = r.value(0);
  r.skipWs();
  if (r.pos !== text.length) r.fail("SYNTAX", "trailing characters");
  return v;
}

export type ParseResult = { ok: true; value: JsonValue } | { ok: false; error: CanonicalError };

/** Like parseStrict, as a tagged result: attacker bytes give data, not exceptions. */
export function tryParseStrict(input: string | Uint8Array, opts: StrictParseOptions = {}): ParseResult {
  try {
    return { ok: true, value: parseStrict(input, opts) };
  } catch (e) {
    if (e instanceof CanonicalError) return { ok: false, error: e };
    // RangeError from the engine (stack overflow on a pathological input) is still bad input.
    return { ok: false, error: new CanonicalError("SYNTAX", e instanceof Error ? e.message : "unparseable") };
  }
}
