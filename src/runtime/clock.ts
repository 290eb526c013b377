// The one place the wall clock is read. Everything below the edges takes a `Clock`.
export type Clock = () => number;

export const systemClock: Clock = () => Date.now();

/** A clock offset from another (clock-skew faults in scenarios). */
export function skewedClock(base: Clock, offsetMs: () => number): Clock {
  return () => base() + offsetMs();
}
