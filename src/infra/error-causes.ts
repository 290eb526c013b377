// Errors wrap errors (`cause`): the places that look for a particular one down the chain walk it
// here, bounded, since nothing stops a cause chain from being long or from looping back on itself.

/** `e` and its causes, outermost first: at most `max` of them, and only while each is an Error. */
export function* causeChain(e: unknown, max = 8): Generator<Error> {
  let c: unknown = e;
  for (let i = 0; c instanceof Error && i < max; i++, c = c.cause) yield c;
}
