/**
 * One side of a benchmark in its own OS process (`scripts/bench_proc.ts` starts two): a storage
 * host on a region file, or a TCP endpoint on 127.0.0.1. The job comes as one JSON argument;
 * every report goes to stdout as one JSON line. The jobs are the very ones the Worker rows run
 * (`shm_host_jobs.ts`, `bench_tcp_worker.ts`), so a `-proc` row differs from its Worker row
 * only in where the two sides live.
 *
 *     deno run --allow-read --allow-write --allow-ffi --allow-net=127.0.0.1 \
 *       scripts/bench_proc_host.ts '{"transport":"stp","regionPath":"/dev/shm/…", …}'
 *
 * @module
 */

import { openRegionFile } from "../src/adapters/region_file.ts";
import { createStorageSockets } from "../src/adapters/shm.ts";
import { type HostJob, runHostJob } from "../src/adapters/shm_host_jobs.ts";
import { runTcpJob, type TcpBenchJob } from "./bench_tcp_worker.ts";

/** A job for a benchmark process. */
export type ProcJob =
  | HostJob & { readonly transport: "stp"; readonly regionPath: string }
  | TcpBenchJob & { readonly transport: "tcp" };

const encoder = new TextEncoder();
const post = (message: unknown) => {
  Deno.stdout.writeSync(encoder.encode(`${JSON.stringify(message)}\n`));
};

async function run(job: ProcJob): Promise<void> {
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
  const text = Deno.args[0];
  if (text === undefined) {
    console.error("usage: bench_proc_host.ts '<job as JSON>'");
    Deno.exit(2);
  }
  await run(JSON.parse(text) as ProcJob);
}
