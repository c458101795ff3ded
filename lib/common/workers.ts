/**
 * Starting Workers so that they also work inside the compiled binary.
 *
 * `bun build --compile` only embeds a Worker file if it is listed as an extra entrypoint; the
 * build (install/build.ts) lists every `*.worker.ts` under lib/. Inside the binary a worker is named
 * "./<path relative to the repository root>", which is how the bundle keys it; from source we
 * resolve the same relative path against the repository root.
 */
import { join } from "node:path";

const REPO_ROOT = join(import.meta.dir, "..", "..");

/** True when running from the compiled `wolf` binary rather than from source. */
// (import.meta.path is inlined at build time under --minify, so ask Bun.main instead.)
export const isCompiled: boolean = Bun.main.startsWith("/$bunfs/");

/** `relPath` is relative to the repository root, e.g. "lib/net/device/dataplane.worker.ts". */
export function workerUrl(relPath: string): string {
  if (!relPath.endsWith(".worker.ts")) throw new Error(`worker files must end in .worker.ts: ${relPath}`);
  return isCompiled ? `./${relPath}` : join(REPO_ROOT, relPath);
}

/** Starts a worker and turns a load failure (e.g. missing from the bundle) into a rejected promise. */
export function startWorker(relPath: string, options?: WorkerOptions): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerUrl(relPath), options);
    const onError = (event: ErrorEvent) => {
      worker.removeEventListener("open", onOpen);
      reject(new Error(`worker ${relPath} failed to start: ${event.message || "not found in the bundle?"}`));
    };
    const onOpen = () => {
      worker.removeEventListener("error", onError);
      resolve(worker);
    };
    worker.addEventListener("error", onError, { once: true });
    worker.addEventListener("open", onOpen, { once: true });
  });
}
