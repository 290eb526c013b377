// The default branch of an exhaustive `switch` over a union: the compiler proves it unreachable
// (`x` is `never`); at run time, a value from outside the types (a newer peer, a bad cast) throws,
// and the caller's catch turns that into a deny, never a pass.

/** Throws a TypeError naming `what` was not handled and the value (as JSON where it can be). */
export function assertNever(x: never, what = "case"): never {
  let shown: string;
  try {
    shown = JSON.stringify(x) ?? String(x);
  } catch {
    shown = String(x);
  }
  throw new TypeError(`unhandled ${what} ${shown}`);
}
