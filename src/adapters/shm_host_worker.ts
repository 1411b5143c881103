/**
 * A storage host in a Worker, for the integration tests and the benchmark: it receives one
 * {@link WorkerHostJob}, runs it through `createStorageSockets` on the shared region
 * (`shm_host_jobs.ts` says what each job does), and posts the reports.
 *
 * @module
 */

import { hostSide } from "./host_link.ts";
import { createStorageSockets } from "./shm.ts";
import { type HostJob, type HostReport, runHostJob } from "./shm_host_jobs.ts";

export type { HostReport };

/** A job for a worker host: a host job on a SharedArrayBuffer region. */
export interface WorkerHostJob extends HostJob {
  readonly region: SharedArrayBuffer;
}

/** What a storage host receives: its job. */
export type StorageHostInput = { readonly type: "job"; readonly job: WorkerHostJob };

const side = hostSide<StorageHostInput, HostReport>();
const { job } = await side.next("job", Number.POSITIVE_INFINITY);
const host = createStorageSockets({
  region: job.region,
  ...(job.waitMode === undefined ? {} : { waitMode: job.waitMode }),
});
try {
  await runHostJob(host, job, (report) => side.post(report));
} finally {
  await host.dispose();
  (globalThis as unknown as { close(): void }).close();
}
