// Errors wrap errors (`cause`): the places that look for a particular one down the chain walk it
// here, bounded, since nothing stops a cause chain from being long or from looping back on itself.

/** `e` and its causes, outermost first: at most `max` of them, and only while each is an Error. */
export function* causeChain(e: unknown, max = 8): Generator<Error> {
  let c: unknown = e;
  for (let i = 0; c instanceof Error && i < max; i++, c = c.cause) yield c;
}

/** An error and its causes in one line ("AUDIT_WRITE_FAILED: …: IO error: …: File too large"). */
export function describeFailure(e: unknown): string {
  const parts = [...causeChain(e)].map((c) => c.message).filter((m) => m !== "");
  return parts.length > 0 ? parts.join(": ") : String(e);
}
