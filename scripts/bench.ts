/**
 * `deno task bench [--json]`: lanfree's benchmarks, every row measured in the same run so
 * ratios between rows are meaningful on a noisy machine.
 *
 * Rows: `memcpy` (MB/s, 64 MiB Uint8Array copies), `tcp-loopback` (MB/s, raw Deno TCP on
 * 127.0.0.1 between two Worker hosts, 1 MiB writes, 1 GiB moved), `tcp-sockets` (the same
 * through lanfree's TCP `Sockets` adapter), `tcp-rtt` (median µs round trip of a 16-byte
 * message between two Workers), and the storage transport's `stp-ring` (MB/s Worker to Worker
 * through the region, 1 MiB sends, 2 GiB), `stp-ring-64k` (64 KiB sends), `stp-rtt` and
 * `stp-ring-zc` (the zero-copy reserve/commit path); the process-to-process rows of
 * `bench_proc.ts` (`stp-ring-proc` through a region file, `tcp-loopback-proc`, `stp-rtt-proc`,
 * `tcp-rtt-proc`); and
 * `handshake-fs`, `handshake-db` (median setup ms of 200 handshakes between two Worker hosts over
 * 127.0.0.1 and the region); and the backup rows of `bench_backup.ts` (`tar-pipe`, `backup-e2e`,
 * `restore-e2e`, `backup-noop`, peak RSS for 1 GiB and 4 GiB); the retention rows of
 * `bench_prune.ts` (`prune-1g`: forget and prune of ten snapshots of the 1 GiB dataset down to
 * three, beside `restic-prune` on the same data when restic is installed); and
 * `edge-cold-start-ms` (median ms from starting workerd with the edge bundle to its first
 * response); and the start-up rows of `bench_startup.ts` (`startup-backup`, `startup-restore`:
 * a one-file backup and restore beside an empty `deno run`, with peak RSS).
 *
 * @module
 */

import { nextReport, startTcpHost } from "./_worker_host.ts";
import { benchStp } from "./bench_stp.ts";
import { benchProc } from "./bench_proc.ts";
import { benchBackup } from "./bench_backup.ts";
import { benchPrune } from "./bench_prune.ts";
import { benchEdgeColdStart } from "./bench_edge.ts";
import { runHandshakePair } from "../src/app/hosts/handshake_pair.ts";
import { freePortPair } from "../src/app/hosts/ports.ts";
import { benchLargeTree, benchRealTree } from "./bench_real_tree.ts";
import { benchStartup } from "./bench_startup.ts";

/** One benchmark result. */
export interface BenchRow {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
}

const MIB = 1024 * 1024;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** MB/s of copying a 64 MiB buffer into another, median of 16 copies (after 2 warm-ups). */
export function benchMemcpy(bufferBytes = 64 * MIB, copies = 16): BenchRow {
  const source = new Uint8Array(bufferBytes);
  const target = new Uint8Array(bufferBytes);
  crypto.getRandomValues(source.subarray(0, 65536));
  const rates: number[] = [];
  for (let copy = -2; copy < copies; copy++) {
    const started = performance.now();
    target.set(source);
    const seconds = (performance.now() - started) / 1000;
    if (copy >= 0) rates.push(bufferBytes / 1e6 / seconds);
  }
  if (target[100] !== source[100]) throw new Error("memcpy did not copy");
  return { name: "memcpy", value: median(rates), unit: "MB/s" };
}

/** MB/s between two Worker hosts over 127.0.0.1. */
export async function benchTcpStream(
  api: "deno" | "sockets",
  totalBytes = 1024 * MIB,
  chunkBytes = MIB,
): Promise<BenchRow> {
  const sink = startTcpHost({ role: "sink", api, chunkBytes });
  let source: ReturnType<typeof startTcpHost> | undefined;
  try {
    const { port } = await nextReport(sink, "port");
    const started = performance.now();
    source = startTcpHost({ role: "source", api, port, totalBytes, chunkBytes });
    const { receivedBytes } = await nextReport(sink, "received");
    const seconds = (performance.now() - started) / 1000;
    await nextReport(source, "sent");
    if (receivedBytes !== totalBytes) {
      throw new Error(`tcp bench moved ${receivedBytes} bytes, expected ${totalBytes}`);
    }
    const name = api === "deno" ? "tcp-loopback" : "tcp-sockets";
    return { name, value: totalBytes / 1e6 / seconds, unit: "MB/s" };
  } finally {
    sink.terminate();
    source?.terminate();
  }
}

/** Median round trip of a 16-byte message between two Worker hosts over TCP, in µs. */
export async function benchTcpRtt(rounds = 2000): Promise<BenchRow> {
  const server = startTcpHost({ role: "echo" });
  let client: ReturnType<typeof startTcpHost> | undefined;
  try {
    const { port } = await nextReport(server, "port");
    client = startTcpHost({ role: "ping", port, rounds });
    const { roundTripsUs } = await nextReport(client, "rtt");
    return { name: "tcp-rtt", value: median(roundTripsUs.slice(rounds / 10)), unit: "µs" };
  } finally {
    server.terminate();
    client?.terminate();
  }
}

/** Median setup time of `runs` handshakes between two Worker hosts (initiator's view), ms. */
export async function benchHandshake(flow: "fs" | "db", runs = 200): Promise<BenchRow> {
  const { listener, initiator } = await runHandshakePair({
    flow,
    wellKnownPort: freePortPair,
    repeat: runs,
  });
  const setupMs = initiator.setupMs ?? [];
  if (setupMs.length !== runs) {
    const reasons = [initiator, listener].map((side) =>
      side.outcome?.status === "failed" ? JSON.stringify(side.outcome.reason) : side.error
    ).filter((reason) => reason !== undefined);
    throw new Error(
      `handshake-${flow}: ${setupMs.length} of ${runs} runs established: ${reasons.join("; ")}`,
    );
  }
  return { name: `handshake-${flow}`, value: median(setupMs), unit: "ms" };
}

/** The ratios the goals are stated in, from rows of this same run. */
export function ratioRows(rows: readonly BenchRow[]): BenchRow[] {
  const value = (name: string) => rows.find((row) => row.name === name)?.value;
  const pairs: Array<[string, string]> = [
    ["stp-ring", "memcpy"],
    ["stp-ring", "tcp-loopback"],
    ["stp-rtt", "tcp-rtt"],
    ["stp-ring-proc", "tcp-loopback-proc"],
    ["stp-rtt-proc", "tcp-rtt-proc"],
    ["stp-ring-zc", "memcpy"],
    ["backup-e2e", "tar-pipe"],
    ["backup-e2e", "backup-e2e-copy"],
    ["backup-e2e", "tar-pipe-synced"],
    ["restore-e2e", "tar-pipe"],
    ["prune-1g", "restic-prune"],
    ["backup-2proc", "tar-pipe-synced"],
    ["restore-2proc", "tar-pipe-synced"],
    ["backup-2proc", "backup-e2e"],
    ["restore-2proc", "restore-e2e"],
    ["backup-small", "restic-small"],
    ["backup-small", "tar-pipe-small"],
    ["noop-small", "restic-noop-small"],
    ["restore-small", "restic-restore-small"],
    ["restore-small", "tar-extract-small"],
    ["startup-backup", "startup-deno"],
    ["startup-restore", "startup-deno"],
  ];
  return pairs.flatMap(([over, under]) => {
    const [a, b] = [value(over), value(under)];
    return a === undefined || b === undefined || b === 0
      ? []
      : [{ name: `${over}/${under}`, value: a / b, unit: "x" }];
  });
}

/** The benchmark groups, in the order they run; `--only` picks some by name. */
export const BENCH_GROUPS: Readonly<Record<string, () => Promise<BenchRow[]>>> = {
  memcpy: () => Promise.resolve([benchMemcpy()]),
  tcp: async () => [
    await benchTcpStream("deno"),
    await benchTcpStream("sockets"),
    await benchTcpRtt(),
  ],
  stp: benchStp,
  proc: benchProc,
  handshake: async () => [await benchHandshake("fs"), await benchHandshake("db")],
  backup: benchBackup,
  prune: benchPrune,
  edge: async () => [await benchEdgeColdStart()],
  "real-tree": benchRealTree,
  "large-tree": benchLargeTree,
  startup: benchStartup,
};

/**
 * Runs the benchmark groups in one process, one after the other, then the ratio rows of what
 * ran.
 *
 * @param log prints each row as it is measured
 * @param only group names to run (default all)
 * @returns every row
 */
export async function runBenchmarks(
  log: (line: string) => void = () => {},
  only: readonly string[] = Object.keys(BENCH_GROUPS),
): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const add = (row: BenchRow) => {
    rows.push(row);
    const digits = row.unit === "x" ? 2 : 1;
    log(`${row.name.padEnd(24)} ${row.value.toFixed(digits).padStart(10)} ${row.unit}`);
  };
  for (const [name, group] of Object.entries(BENCH_GROUPS)) {
    if (only.includes(name)) { for (const row of await group()) add(row); }
  }
  for (const row of ratioRows(rows)) add(row);
  return rows;
}

const USAGE = `usage: deno task bench [--json] [--only GROUP,...]
groups: ${Object.keys(BENCH_GROUPS).join(", ")} (default: all)`;

if (import.meta.main) {
  const json = Deno.args.includes("--json");
  const onlyAt = Deno.args.indexOf("--only");
  const only = onlyAt < 0 ? Object.keys(BENCH_GROUPS) : (Deno.args[onlyAt + 1] ?? "").split(",");
  const known = new Set(["--json", "--only", ...(onlyAt < 0 ? [] : [Deno.args[onlyAt + 1]])]);
  const unknown = [
    ...Deno.args.filter((arg) => !known.has(arg)),
    ...only.filter((g) => !(g in BENCH_GROUPS)),
  ];
  if (unknown.length > 0) {
    console.error(`bench: unknown argument or group ${unknown[0]}\n${USAGE}`);
    Deno.exit(2);
  }
  if (!json) console.log(`${"name".padEnd(24)} ${"value".padStart(10)} unit`);
  const rows = await runBenchmarks(json ? undefined : console.log, only);
  if (json) console.log(JSON.stringify(rows));
}
