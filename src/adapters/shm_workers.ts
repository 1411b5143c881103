/**
 * Spawning worker hosts (`shm_host_worker.ts`) and waiting for their reports, shared by the
 * integration tests and the benchmark.
 *
 * @module
 */

import { type HostLink, startWorkerHost } from "./host_link.ts";
import type { HostReport, StorageHostInput, WorkerHostJob as HostJob } from "./shm_host_worker.ts";

/** A worker host and the reports it has posted. */
export interface WorkerHost {
  /** The link to the Worker. */
  readonly link: HostLink<StorageHostInput, HostReport>;
  /** Resolves with the next report of `type` (or the first failure), rejects after `timeoutMs`. */
  next(type: HostReport["type"], timeoutMs: number): Promise<HostReport>;
  /** Stops the Worker at once (no clean-up: its lease just stops being renewed). */
  terminate(): void;
}

/**
 * Starts a worker host on a job.
 *
 * @param job what the host does
 * @returns the host
 */
export function startHost(job: HostJob): WorkerHost {
  const link = startWorkerHost<StorageHostInput, HostReport>(
    new URL("./shm_host_worker.ts", import.meta.url),
    `storage host (${job.job})`,
  );
  link.post({ type: "job", job });
  return {
    link,
    next: (type, timeoutMs) => link.next([type, "failed"], timeoutMs),
    terminate: () => link.terminate(),
  };
}
