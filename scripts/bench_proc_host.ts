/**
 * One side of a benchmark in its own OS process (`scripts/bench_proc.ts` starts two): a storage
 * host on a region file, or a TCP endpoint on 127.0.0.1. It is a process host
 * (`src/adapters/host_link.ts`): the job comes as a `{ type: "job" }` JSON line on stdin and
 * every report goes to stdout as one JSON line. The jobs are the very ones the Worker rows run
 * (`shm_host_jobs.ts`, `bench_tcp_worker.ts`), so a `-proc` row differs from its Worker row only
 * in where the two sides live.
 *
 * @module
 */

import { hostSide } from "../src/adapters/host_link.ts";
import { openRegionFile } from "../src/adapters/region_file.ts";
import { createStorageSockets } from "../src/adapters/shm.ts";
import { type HostJob, type HostReport, runHostJob } from "../src/adapters/shm_host_jobs.ts";
import { runTcpJob, type TcpBenchJob, type TcpBenchReport } from "./bench_tcp_worker.ts";

/** A job for a benchmark process. */
export type ProcJob =
  | HostJob & { readonly transport: "stp"; readonly regionPath: string }
  | TcpBenchJob & { readonly transport: "tcp" };

/** What a benchmark process receives: its job. */
export type ProcHostInput = { readonly type: "job"; readonly job: ProcJob };

/** What a benchmark process reports. */
export type ProcHostReport = HostReport | TcpBenchReport;

async function run(job: ProcJob, post: (report: ProcHostReport) => void): Promise<void> {
  if (job.transport === "tcp") return await runTcpJob(job, post);
  const region = openRegionFile(job.regionPath);
  const host = createStorageSockets({ region });
  try {
    await runHostJob(host, job, post);
  } finally {
    await host.dispose();
    region.close();
    await region.closed;
  }
}

if (import.meta.main) {
  const side = hostSide<ProcHostInput, ProcHostReport>();
  const { job } = await side.next("job", Number.POSITIVE_INFINITY);
  await run(job, (report) => side.post(report));
  Deno.exit(0); // stdin stays open for the link: leave without waiting for it
}
