/**
 * The TCP benchmark's Worker hosts (`bench_tcp_worker.ts`) through the one host link.
 *
 * @module
 */

import { type HostLink, startWorkerHost } from "../src/adapters/host_link.ts";
import type { TcpBenchInput, TcpBenchJob, TcpBenchReport } from "./bench_tcp_worker.ts";

const TCP_WORKER = new URL("./bench_tcp_worker.ts", import.meta.url);

/**
 * Starts a TCP benchmark Worker on a job.
 *
 * @param job what it does
 * @returns its link (a `failed` report is the job's error)
 */
export function startTcpHost(job: TcpBenchJob): HostLink<TcpBenchInput, TcpBenchReport> {
  const link = startWorkerHost<TcpBenchInput, TcpBenchReport>(TCP_WORKER, `tcp host (${job.role})`);
  link.post({ type: "job", job });
  return link;
}

/**
 * The next report of `type`; a `failed` report throws with its error.
 *
 * @param link the host
 * @param type what is awaited
 * @param timeoutMs how long to wait
 * @returns the report
 */
export async function nextReport<T extends TcpBenchReport["type"]>(
  link: HostLink<TcpBenchInput, TcpBenchReport>,
  type: T,
  timeoutMs = 120_000,
): Promise<Extract<TcpBenchReport, { type: T }>> {
  const report: TcpBenchReport = await link.next([type, "failed"], timeoutMs);
  if (report.type === "failed") throw new Error(`${link.name} failed: ${report.error}`);
  return report as Extract<TcpBenchReport, { type: T }>;
}
