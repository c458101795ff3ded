/** A trivial worker used by `wolf internal worker-check` to prove Workers are in the bundle. */
declare const self: Worker;
self.onmessage = (event: MessageEvent) => {
  self.postMessage({ echo: event.data, pid: process.pid });
};
