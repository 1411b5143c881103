/**
 * Spawning worker hosts (`shm_host_worker.ts`) and waiting for their reports, shared by the
 * integration tests and the benchmark.
 *
 * @module
 */

import type { HostReport, WorkerHostJob as HostJob } from "./shm_host_worker.ts";

/** A worker host and the reports it has posted. */
export interface WorkerHost {
  readonly worker: Worker;
  /** Resolves with the first report of `kind` (or the first failure), rejects after `timeoutMs`. */
  next(kind: HostReport["kind"], timeoutMs: number): Promise<HostReport>;
}

/**
 * Starts a worker host on a job.
 *
 * @param job what the host does
 * @returns the host
 */
export function startHost(job: HostJob): WorkerHost {
  const worker = new Worker(new URL("./shm_host_worker.ts", import.meta.url), { type: "module" });
  const reports: HostReport[] = [];
  const waiters = new Set<() => void>();
  worker.onmessage = (event: MessageEvent<HostReport>) => {
    reports.push(event.data);
    for (const wake of waiters) wake();
  };
  worker.postMessage(job);
  const find = (kind: HostReport["kind"]) =>
    reports.find((r) => r.kind === kind || r.kind === "failed");
  return {
    worker,
    next(kind, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = find(kind);
          if (found === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`worker host (${job.job}) sent no ${kind} report in ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}
