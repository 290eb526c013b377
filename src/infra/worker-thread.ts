// Start a worker thread on one of our modules, from compiled JS or from the TypeScript sources
// (tsx, vitest), where the worker must load tsx's ESM hooks before the module.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";

/** `base` is the caller's import.meta.url; `name` the worker module without extension. */
export function startWorker(base: string, name: string): Worker {
  const self = new URL(base);
  const target = new URL(self.pathname.endsWith(".ts") ? `./${name}.ts` : `./${name}.js`, self).href;
  if (!target.endsWith(".ts")) return new Worker(new URL(target));
  const req = createRequire(base);
  const api = pathToFileURL(req.resolve("tsx/esm/api").replace(/index\.cjs$/, "index.mjs")).href;
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); });`;
  return new Worker(code, { eval: true });
}
