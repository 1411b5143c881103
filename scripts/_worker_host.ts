/**
 * A Worker host with a message queue: start a module worker, post jobs, await its messages in
 * order. Used by benchmarks and integration tests to run each side in its own isolate.
 *
 * @module
 */

/** A running Worker and the messages it posted, in order. */
export interface WorkerHost {
  post(message: unknown): void;
  /** The next message; rejects if the worker reports `{ error }` or fails, or after `timeoutMs`. */
  next<T>(timeoutMs?: number): Promise<T>;
  terminate(): void;
}

/**
 * Starts a module Worker.
 *
 * @param url the worker module
 * @returns the host
 */
export function startWorkerHost(url: URL): WorkerHost {
  const worker = new Worker(url, { type: "module" });
  const queued: unknown[] = [];
  const waiting: Array<{ resolve(message: unknown): void; reject(error: Error): void }> = [];
  let failure: Error | undefined;
  const deliver = (message: unknown) => {
    const waiter = waiting.shift();
    if (waiter === undefined) queued.push(message);
    else if (isErrorMessage(message)) waiter.reject(new Error(`worker failed: ${message.error}`));
    else waiter.resolve(message);
  };
  worker.onmessage = (event) => deliver(event.data);
  worker.onerror = (event) => {
    event.preventDefault();
    failure = new Error(`worker crashed: ${event.message}`);
    for (const waiter of waiting.splice(0)) waiter.reject(failure);
  };
  return {
    post: (message) => worker.postMessage(message),
    next<T>(timeoutMs = 120_000): Promise<T> {
      if (queued.length > 0) {
        const message = queued.shift();
        return isErrorMessage(message)
          ? Promise.reject(new Error(`worker failed: ${message.error}`))
          : Promise.resolve(message as T);
      }
      if (failure !== undefined) return Promise.reject(failure);
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`worker sent nothing within ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiting.push({
          resolve: (message) => (clearTimeout(timer), resolve(message as T)),
          reject: (error) => (clearTimeout(timer), reject(error)),
        });
      });
    },
    terminate: () => worker.terminate(),
  };
}

function isErrorMessage(message: unknown): message is { error: string } {
  return typeof message === "object" && message !== null && "error" in message;
}
