// nats.js's KV watch and history run on an ordered push consumer whose idle-heartbeat monitor is a
// setInterval. Stopping the iterator cancels it; closing the connection does not: the monitor then
// misses its heartbeats, tries to re-make the consumer on the closed connection every few seconds,
// prints the ClosedConnectionError to stdout (console.log, in nats-core's IdleHeartbeatMonitor)
// and keeps the process alive for good. Found by an operator's review: `npm start -- --json`
// printed its report, then those stack traces, and never exited.
import type { NatsConnection } from "@nats-io/transport-node";

/**
 * Stop `it` when `signal` aborts (at once if it already has: a listener added after the abort
 * never fires) or when `nc` closes, whichever comes first.
 */
export function stopWatchWith(it: { stop(): void }, nc: NatsConnection, signal?: AbortSignal): void {
  const stop = (): void => {
    try {
      it.stop();
    } catch {
      // already stopped
    }
  };
  if (signal?.aborted === true) stop();
  else signal?.addEventListener("abort", stop, { once: true });
  nc.closed().then(stop, stop);
}
