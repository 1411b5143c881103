/**
 * Worker host for the TCP benchmarks: one Worker per side, so each side has its own isolate and
 * event loop as two hosts would. Messages in: a {@link TcpBenchJob}; messages out: results.
 *
 * @module
 */

import { hostSide } from "../src/adapters/host_link.ts";
import { createTcpSockets } from "../src/adapters/tcp.ts";

/** What the main thread asks a worker to do. */
export type TcpBenchJob =
  | { readonly role: "sink"; readonly api: "deno" | "sockets"; readonly chunkBytes: number }
  | {
    readonly role: "source";
    readonly api: "deno" | "sockets";
    readonly port: number;
    readonly totalBytes: number;
    readonly chunkBytes: number;
  }
  | { readonly role: "echo" }
  | { readonly role: "ping"; readonly port: number; readonly rounds: number };

const LOOPBACK = "127.0.0.1";
/** What a TCP benchmark host reports. */
export type TcpBenchReport =
  | { readonly type: "port"; readonly port: number }
  | { readonly type: "received"; readonly receivedBytes: number; readonly elapsedMs: number }
  | { readonly type: "sent" }
  | { readonly type: "rtt"; readonly roundTripsUs: number[] }
  | { readonly type: "failed"; readonly error: string };

/** What a TCP benchmark host receives: its job. */
export type TcpBenchInput = { readonly type: "job"; readonly job: TcpBenchJob };

/** Where a job's results go: the Worker's side of its link, or a process's stdout. */
export type Post = (message: TcpBenchReport) => void;

async function sinkDeno(chunkBytes: number, post: Post) {
  const listener = Deno.listen({ hostname: LOOPBACK, port: 0 });
  post({ type: "port", port: (listener.addr as Deno.NetAddr).port });
  const conn = await listener.accept();
  const into = new Uint8Array(chunkBytes);
  let receivedBytes = 0;
  const startedMs = performance.now();
  for (;;) {
    const got = await conn.read(into);
    if (got === null) break;
    receivedBytes += got;
  }
  const elapsedMs = performance.now() - startedMs; // from the connection to end of stream
  conn.close();
  listener.close();
  post({ type: "received", receivedBytes, elapsedMs });
}

async function sinkSockets(chunkBytes: number, post: Post) {
  const net = createTcpSockets({ ioTimeoutMs: 60_000 });
  const listener = await net.socket("network");
  await net.bind(listener, { kind: "network", host: LOOPBACK, port: 0 });
  await net.listen(listener, 1);
  post({ type: "port", port: (await net.getsockname(listener)).port });
  const fd = await net.accept(listener);
  const into = new Uint8Array(chunkBytes);
  let receivedBytes = 0;
  const startedMs = performance.now();
  for (;;) {
    const got = await net.recv(fd, into);
    if (got === null) break;
    receivedBytes += got;
  }
  const elapsedMs = performance.now() - startedMs;
  await net.close(fd);
  await net.close(listener);
  post({ type: "received", receivedBytes, elapsedMs });
}

async function source(job: Extract<TcpBenchJob, { role: "source" }>, post: Post) {
  const chunk = new Uint8Array(job.chunkBytes);
  crypto.getRandomValues(chunk.subarray(0, Math.min(chunk.length, 65536)));
  if (job.api === "deno") {
    const conn = await Deno.connect({ hostname: LOOPBACK, port: job.port });
    for (let sent = 0; sent < job.totalBytes; sent += chunk.length) {
      let off = 0;
      while (off < chunk.length) off += await conn.write(chunk.subarray(off));
    }
    conn.close();
  } else {
    const net = createTcpSockets({ ioTimeoutMs: 60_000 });
    const fd = await net.socket("network");
    await net.connect(fd, { kind: "network", host: LOOPBACK, port: job.port });
    for (let sent = 0; sent < job.totalBytes; sent += chunk.length) await net.send(fd, chunk);
    await net.close(fd);
  }
  post({ type: "sent" });
}

async function echo(post: Post) {
  const listener = Deno.listen({ hostname: LOOPBACK, port: 0 });
  post({ type: "port", port: (listener.addr as Deno.NetAddr).port });
  const conn = await listener.accept();
  conn.setNoDelay(true);
  const into = new Uint8Array(16);
  for (;;) {
    const got = await conn.read(into);
    if (got === null) break;
    await conn.write(into.subarray(0, got));
  }
  conn.close();
  listener.close();
}

async function ping(port: number, rounds: number, post: Post) {
  const conn = await Deno.connect({ hostname: LOOPBACK, port });
  conn.setNoDelay(true);
  const message = new Uint8Array(16);
  const into = new Uint8Array(16);
  const roundTripsUs: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const started = performance.now();
    await conn.write(message);
    let got = 0;
    while (got < 16) got += (await conn.read(into.subarray(got))) ?? 16;
    roundTripsUs.push((performance.now() - started) * 1000);
  }
  conn.close();
  post({ type: "rtt", roundTripsUs });
}

/**
 * Runs one TCP benchmark job, posting its results (and `failed` on failure).
 *
 * @param job what to do
 * @param post where results go
 */
export function runTcpJob(job: TcpBenchJob, post: Post): Promise<void> {
  const run = job.role === "sink"
    ? (job.api === "deno" ? sinkDeno(job.chunkBytes, post) : sinkSockets(job.chunkBytes, post))
    : job.role === "source"
    ? source(job, post)
    : job.role === "echo"
    ? echo(post)
    : ping(job.port, job.rounds, post);
  return run.catch((error) => post({ type: "failed", error: String(error) }));
}

if (typeof (globalThis as { postMessage?: unknown }).postMessage === "function") {
  // Started as a Worker host (a process host imports this module and has no postMessage).
  const side = hostSide<TcpBenchInput, TcpBenchReport>();
  const { job } = await side.next("job", Number.POSITIVE_INFINITY);
  await runTcpJob(job, (report) => side.post(report));
}
