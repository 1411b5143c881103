/**
 * Benchmark rows between two OS processes: `stp-ring-proc` (MB/s through a region file, 1 MiB
 * sends, 2 GiB, the method of `stp-ring`), `tcp-loopback-proc` (MB/s over TCP on 127.0.0.1, 1 MiB
 * writes, 2 GiB, the method of `tcp-loopback`), and `stp-rtt-proc`, `tcp-rtt-proc` (median µs
 * of a 16-byte round trip, 2000 rounds, the first tenth dropped as warm-up). Each side is a
 * `deno run scripts/bench_proc_host.ts` process; every rate is timed inside the processes (from
 * the connection to the end of the stream), so process start-up is not counted. Region files go
 * in a fresh directory under /dev/shm and are removed afterwards.
 *
 * @module
 */

import { createRegionFile } from "../src/adapters/region_file.ts";
import { makeTempDirectory, removeDirectory, unlinkFile } from "../src/adapters/_libc_files.ts";
import { type ProcessHost, startProcessHost } from "../src/adapters/host_link.ts";
import type { HostReport } from "../src/adapters/shm_host_jobs.ts";
import { cleanUpOnSignal, removeQuietly, sweepStaleScratch } from "./_leftovers.ts";
import type { ProcHostInput, ProcHostReport, ProcJob } from "./bench_proc_host.ts";

const MIB = 1 << 20;
const STREAM_BYTES = 2048 * MIB;
const RTT_ROUNDS = 2000;
const HOST = new URL("./bench_proc_host.ts", import.meta.url);
const FLAGS = ["--allow-read", "--allow-write", "--allow-ffi", "--allow-net=127.0.0.1"];
/** Longest wait for one report (a 2 GiB stream on a loaded machine). */
const REPORT_WAIT_MS = 600_000;

/** One benchmark row. */
export interface ProcRow {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

/** A benchmark process host on a job. */
class Side {
  readonly link: ProcessHost<ProcHostInput, ProcHostReport>;

  constructor(job: ProcJob) {
    this.link = startProcessHost<ProcHostInput, ProcHostReport>(
      { script: HOST, flags: FLAGS },
      `benchmark process (${"job" in job ? job.job : job.role})`,
    );
    this.link.post({ type: "job", job });
  }

  /** The next report of `type`; a failure report or an early end throws. */
  async next<T extends ProcHostReport["type"]>(
    type: T,
  ): Promise<Extract<ProcHostReport, { type: T }>> {
    const report: ProcHostReport = await this.link.next([type, "failed"], REPORT_WAIT_MS);
    if (report.type === "failed") {
      throw new Error(`${this.link.name} failed: ${JSON.stringify(report)}`);
    }
    return report as Extract<ProcHostReport, { type: T }>;
  }

  /** Waits for the process to exit. */
  async exited(): Promise<void> {
    await this.link.ended;
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** A fresh region file for one pair of processes. */
function regionFile(directory: string, name: string): string {
  const path = `${directory}/${name}`;
  createRegionFile(path, {
    stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 30000, ephemeralPortMax: 30010 }],
    extentBytes: 8 * MIB,
    blockCount: 8,
    hostCount: 4,
    ioTimeoutMs: 30_000,
    leaseMs: 5000,
    backlogMax: 1,
  }).close();
  return path;
}

type Done = Extract<HostReport, { type: "done" }>;

async function stpPair(regionPath: string, server: Partial<ProcJob>, client: Partial<ProcJob>) {
  const base = { transport: "stp", regionPath, stg: 1, port: 10, hash: false } as const;
  const job = { ...base, totalBytes: 0, chunkBytes: MIB, rounds: 0 };
  const receiver = new Side({ ...job, job: "receive", ...server } as ProcJob);
  await receiver.next("listening");
  const sender = new Side({ ...job, job: "send", ...client } as ProcJob);
  const reports = await Promise.all([receiver.next("done"), sender.next("done")]);
  await Promise.all([receiver.exited(), sender.exited()]);
  return reports as [Done, Done];
}

async function tcpStream(): Promise<number> {
  const sink = new Side({ transport: "tcp", role: "sink", api: "deno", chunkBytes: MIB });
  const { port } = await sink.next("port");
  const source = new Side({
    transport: "tcp",
    role: "source",
    api: "deno",
    port,
    totalBytes: STREAM_BYTES,
    chunkBytes: MIB,
  });
  const { receivedBytes, elapsedMs } = await sink.next("received");
  await Promise.all([source.exited(), sink.exited()]);
  if (receivedBytes !== STREAM_BYTES) throw new Error(`tcp moved ${receivedBytes} bytes`);
  return STREAM_BYTES / 1e6 / (elapsedMs / 1000);
}

async function tcpRtt(): Promise<number> {
  const server = new Side({ transport: "tcp", role: "echo" });
  const { port } = await server.next("port");
  const client = new Side({ transport: "tcp", role: "ping", port, rounds: RTT_ROUNDS });
  const { roundTripsUs } = await client.next("rtt");
  await Promise.all([client.exited(), server.exited()]);
  return median(roundTripsUs.slice(RTT_ROUNDS / 10));
}

/**
 * Measures the process-to-process rows.
 *
 * @returns `stp-ring-proc`, `tcp-loopback-proc` (MB/s), `stp-rtt-proc`, `tcp-rtt-proc` (µs)
 */
export async function benchProc(): Promise<ProcRow[]> {
  sweepStaleScratch();
  const directory = makeTempDirectory("/dev/shm/lanfree-bench-");
  const forget = cleanUpOnSignal(() => removeQuietly(directory)); // stopped: nothing left
  const files: string[] = [];
  try {
    const ringPath = regionFile(directory, "ring");
    files.push(ringPath);
    const [received, sent] = await stpPair(ringPath, {}, { totalBytes: STREAM_BYTES });
    if (received.bytes !== STREAM_BYTES) throw new Error(`stp moved ${received.bytes} bytes`);
    const ringMBps = STREAM_BYTES / 1e6 / (Math.max(received.elapsedMs, sent.elapsedMs) / 1000);
    const rttPath = regionFile(directory, "rtt");
    files.push(rttPath);
    const [, pinger] = await stpPair(
      rttPath,
      { job: "echo", chunkBytes: 16 },
      { job: "ping", chunkBytes: 16, rounds: RTT_ROUNDS },
    );
    const stpRttUs = median(pinger.micros.slice(RTT_ROUNDS / 10));
    return [
      { name: "stp-ring-proc", value: Math.round(ringMBps), unit: "MB/s" },
      { name: "tcp-loopback-proc", value: Math.round(await tcpStream()), unit: "MB/s" },
      { name: "stp-rtt-proc", value: Math.round(stpRttUs * 10) / 10, unit: "µs" },
      { name: "tcp-rtt-proc", value: Math.round((await tcpRtt()) * 10) / 10, unit: "µs" },
    ];
  } finally {
    forget();
    for (const path of files) unlinkFile(path);
    removeDirectory(directory);
  }
}

if (import.meta.main) console.log(JSON.stringify(await benchProc()));
