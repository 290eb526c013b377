// Test fixture (not a suite): a serveRequests worker whose handler throws on request.
import { serveRequests } from "../../src/infra/worker-thread.ts";

serveRequests((c: { op: "echo" | "throw"; v?: unknown }) => {
  if (c.op === "throw") throw new RangeError("refused by handler");
  return c.v;
});
