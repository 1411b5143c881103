/**
 * Benchmark rows of the storage transport: `stp-ring` (MB/s between two Worker hosts through
 * the region, 1 MiB sends, 2 GiB), `stp-ring-64k` (the same with 64 KiB sends), `stp-rtt`
 * (median microseconds of a 16-byte round trip) and `stp-ring-zc` (MB/s of the zero-copy path:
 * the sender reserves spans of up to 1 MiB, writes an 8-byte stamp where a producer would put
 * its data, and commits; the receiver peeks and releases; no bulk copy on either side).
 * `scripts/bench.ts` imports {@link benchStp}.
 *
 * @module
 */

import { formatRegion } from "../src/core/stp/region.ts";
import type { HostReport, WorkerHostJob as HostJob } from "../src/adapters/shm_host_worker.ts";
import { startHost } from "../src/adapters/shm_workers.ts";

const MIB = 1 << 20;
/** Ring size: small enough that both rings of a pair stay in the L2/L3 cache. */
const RING_BYTES = 8 * MIB;
const STREAM_BYTES = 2048 * MIB;
const RTT_ROUNDS = 2000;
const REPORT_TIMEOUT_MS = 300_000;

function region(): SharedArrayBuffer {
  const made = formatRegion({
    stgs: [{ id: 1, extentCount: 2, ephemeralPortMin: 30000, ephemeralPortMax: 30010 }],
    extentBytes: RING_BYTES,
    blockCount: 8,
    hostCount: 4,
    ioTimeoutMs: 30_000,
    leaseMs: 5000,
    backlogMax: 1,
  }, crypto.randomUUID());
  if (!made.ok) throw new Error(made.message);
  return made.value;
}

function done(report: HostReport): Extract<HostReport, { type: "done" }> {
  if (report.type !== "done") throw new Error(`bench host failed: ${JSON.stringify(report)}`);
  return report;
}

/** Runs a server job and a client job on a fresh region; returns both reports. */
async function pairRun(server: Partial<HostJob>, client: Partial<HostJob>) {
  const base = {
    region: region(),
    stg: 1,
    port: 10,
    totalBytes: 0,
    chunkBytes: MIB,
    rounds: 0,
    hash: false,
  };
  const receiver = startHost({ ...base, job: "receive", ...server });
  await receiver.next("listening", REPORT_TIMEOUT_MS);
  const sender = startHost({ ...base, job: "send", ...client });
  const reports = await Promise.all([
    receiver.next("done", REPORT_TIMEOUT_MS),
    sender.next("done", REPORT_TIMEOUT_MS),
  ]);
  return reports.map(done);
}

async function streamMBps(chunkBytes: number, zeroCopy = false): Promise<number> {
  const [received, sent] = await pairRun(
    { chunkBytes, zeroCopy },
    { chunkBytes, totalBytes: STREAM_BYTES, zeroCopy },
  );
  if (received?.bytes !== STREAM_BYTES || sent?.bytes !== STREAM_BYTES) {
    throw new Error(`stream moved ${received?.bytes} of ${STREAM_BYTES} bytes`);
  }
  const elapsedMs = Math.max(received.elapsedMs, sent.elapsedMs);
  return STREAM_BYTES / 1e6 / (elapsedMs / 1000);
}

async function rttMicros(): Promise<number> {
  const [, pinger] = await pairRun(
    { job: "echo", chunkBytes: 16 },
    { job: "ping", chunkBytes: 16, rounds: RTT_ROUNDS },
  );
  const sorted = [...(pinger?.micros ?? [])].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/**
 * Measures the STP rows.
 *
 * @returns `stp-ring`, `stp-ring-64k` and `stp-ring-zc` in MB/s, `stp-rtt` in µs
 */
export async function benchStp(): Promise<Array<{ name: string; value: number; unit: string }>> {
  const ring = await streamMBps(MIB);
  const ring64k = await streamMBps(64 * 1024);
  const rtt = await rttMicros();
  const ringZeroCopy = await streamMBps(MIB, true);
  return [
    { name: "stp-ring", value: Math.round(ring), unit: "MB/s" },
    { name: "stp-ring-64k", value: Math.round(ring64k), unit: "MB/s" },
    { name: "stp-rtt", value: Math.round(rtt * 10) / 10, unit: "µs" },
    { name: "stp-ring-zc", value: Math.round(ringZeroCopy), unit: "MB/s" },
  ];
}

if (import.meta.main) console.log(JSON.stringify(await benchStp()));
