/**
 * A storage host in a Worker, for the integration tests and the benchmark: it receives one
 * {@link WorkerHostJob}, runs it through `createStorageSockets` on the shared region
 * (`shm_host_jobs.ts` says what each job does), and posts the reports.
 *
 * @module
 */

import { createStorageSockets } from "./shm.ts";
import { type HostJob, type HostReport, runHostJob } from "./shm_host_jobs.ts";

export type { HostReport };

/** A job for a worker host: a host job on a SharedArrayBuffer region. */
export interface WorkerHostJob extends HostJob {
  readonly region: SharedArrayBuffer;
}

/** The Worker global scope, typed for what this script uses. */
const scope = self as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent<WorkerHostJob>) => void) | null;
  close(): void;
};

scope.onmessage = async (event: MessageEvent<WorkerHostJob>) => {
  const job = event.data;
  const host = createStorageSockets({
    region: job.region,
    ...(job.waitMode === undefined ? {} : { waitMode: job.waitMode }),
  });
  try {
    await runHostJob(host, job, (report) => scope.postMessage(report));
  } finally {
    await host.dispose();
    scope.close();
  }
};
