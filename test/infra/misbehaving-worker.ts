// Test fixture (not a suite): a worker that speaks the pool's wire protocol by hand, so that it
// can break it on demand.
import { parentPort } from "node:worker_threads";

type Cmd = { op: "echo" | "crash" | "exit0" | "hang" | "null-reply" | "bad-body" | "wrong-id"; v?: unknown };

parentPort?.on("message", (m: { id: number; body: Cmd } | { close: true }) => {
  if ("close" in m) {
    parentPort?.close();
    return;
  }
  const { id, body } = m;
  switch (body.op) {
    case "echo":
      parentPort?.postMessage({ id, body: body.v });
      return;
    case "crash":
      throw new Error("worker crashed");
    case "exit0":
      process.exit(0);
      return;
    case "hang":
      for (;;) {
        // a worker that never answers again
      }
    case "null-reply":
      parentPort?.postMessage(null);
      return;
    case "bad-body":
      parentPort?.postMessage({ id, body: { not: "a number" } });
      return;
    case "wrong-id":
      parentPort?.postMessage({ id: id + 1000, body: body.v });
      return;
  }
});
