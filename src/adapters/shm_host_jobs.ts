/**
 * What a storage host does in the integration tests and the benchmarks, whatever it runs in (a
 * Worker on a SharedArrayBuffer region, `shm_host_worker.ts`, or a process on a region file,
 * `scripts/bench_proc_host.ts`): one job on its `StorageSockets`, reported through `post`.
 *
 * Jobs: `receive` (listen on a port, accept once, read to end of stream, report bytes and
 * SHA-256), `send` (connect, send `totalBytes` of a pattern in `chunkBytes` sends, report bytes
 * and SHA-256), `echo` (accept once, send back every message) and `ping` (connect, time
 * `rounds` round trips of `chunkBytes`). With `zeroCopy`, `send` fills reserved ring space in
 * place (an 8-byte stamp per span, no bulk copy) and `receive` reads peeked spans in place.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { SocketError } from "../core/dispatch/errors.ts";
import type { StorageSockets } from "./shm.ts";
import { patternChunk } from "./_test_pattern.ts";

/** A job for a storage host. */
export interface HostJob {
  readonly job: "receive" | "send" | "echo" | "ping";
  readonly stg: number;
  readonly port: number;
  readonly totalBytes: number;
  readonly chunkBytes: number;
  readonly rounds: number;
  /** Whether to hash the bytes (default true; the benchmark turns it off). */
  readonly hash?: boolean;
  /** How the host waits on a SharedArrayBuffer region (default: the adapter's, `async`). */
  readonly waitMode?: "sync" | "async";
  /** Move the bytes with reserve/commit and peek/release instead of send/recv. */
  readonly zeroCopy?: boolean;
}

/** What a worker host reports. */
export type HostReport =
  | { readonly type: "listening" }
  | { readonly type: "progress"; readonly bytes: number }
  | {
    readonly type: "done";
    readonly bytes: number;
    readonly sha256: string;
    readonly micros: number[];
    readonly elapsedMs: number;
  }
  | {
    readonly type: "failed";
    readonly code: string;
    readonly message: string;
    readonly bytes: number;
  };

/** Where a host job's reports go. */
export type Post = (report: HostReport) => void;

async function receive(host: StorageSockets, job: HostJob, post: Post): Promise<void> {
  const echo = job.job === "echo";
  const listener = await host.socket("storage");
  await host.bind(listener, { kind: "storage", stg: job.stg, port: job.port });
  await host.listen(listener, 1);
  post({ type: "listening" });
  const fd = await host.accept(listener);
  const hash = createHash("sha256");
  const into = new Uint8Array(job.chunkBytes);
  let bytes = 0;
  const startMs = performance.now();
  for (let i = 0; i < Number.MAX_SAFE_INTEGER; i++) {
    const n = await host.recv(fd, into).catch((error) => {
      if (error instanceof SocketError) {
        post({ type: "failed", code: error.code, message: error.message, bytes });
      }
      throw error;
    });
    if (n === null) break;
    if (echo) await host.send(fd, into.subarray(0, n));
    else if (job.hash !== false) hash.update(into.subarray(0, n));
    if (bytes === 0) post({ type: "progress", bytes: n });
    bytes += n;
  }
  const elapsedMs = performance.now() - startMs;
  await host.close(fd);
  await host.close(listener);
  post({ type: "done", bytes, sha256: hash.digest("hex"), micros: [], elapsedMs });
}

async function send(host: StorageSockets, job: HostJob, post: Post): Promise<void> {
  const fd = await host.socket("storage");
  await host.connect(fd, { kind: "storage", stg: job.stg, port: job.port });
  const chunk = patternChunk(job.chunkBytes);
  const stamp = new DataView(chunk.buffer);
  const hash = createHash("sha256");
  let bytes = 0;
  const startMs = performance.now();
  for (let index = 0; bytes < job.totalBytes; index++) {
    const count = Math.min(chunk.length, job.totalBytes - bytes);
    if (count >= 8) stamp.setFloat64(0, index);
    const part = chunk.subarray(0, count);
    if (job.hash !== false) hash.update(part);
    await host.send(fd, part);
    bytes += count;
  }
  const elapsedMs = performance.now() - startMs;
  await host.close(fd);
  post({ type: "done", bytes, sha256: hash.digest("hex"), micros: [], elapsedMs });
}

async function ping(host: StorageSockets, job: HostJob, post: Post): Promise<void> {
  const fd = await host.socket("storage");
  await host.connect(fd, { kind: "storage", stg: job.stg, port: job.port });
  const message = new Uint8Array(job.chunkBytes).fill(7);
  const into = new Uint8Array(job.chunkBytes);
  const micros: number[] = [];
  for (let round = 0; round < job.rounds; round++) {
    const startMs = performance.now();
    await host.send(fd, message);
    for (let got = 0; got < message.length;) {
      got += (await host.recv(fd, into.subarray(got))) ?? message.length;
    }
    micros.push((performance.now() - startMs) * 1000);
  }
  await host.close(fd);
  post({ type: "done", bytes: job.rounds * message.length, sha256: "", micros, elapsedMs: 0 });
}

/** Moves `totalBytes` by reserve/commit: a stamp per span where a producer would put its data. */
async function sendZeroCopy(host: StorageSockets, job: HostJob, post: Post): Promise<void> {
  const fd = await host.socket("storage");
  await host.connect(fd, { kind: "storage", stg: job.stg, port: job.port });
  let bytes = 0;
  const startMs = performance.now();
  for (let index = 0; bytes < job.totalBytes; index++) {
    const view = await host.reserve(fd, Math.min(job.chunkBytes, job.totalBytes - bytes));
    view[0] = index & 0xff;
    host.commit(fd, view.length);
    bytes += view.length;
  }
  const elapsedMs = performance.now() - startMs;
  await host.close(fd);
  post({ type: "done", bytes, sha256: "", micros: [], elapsedMs });
}

/** Reads to end of stream by peek/release, checking each span's stamp is in order. */
async function receiveZeroCopy(host: StorageSockets, job: HostJob, post: Post): Promise<void> {
  const listener = await host.socket("storage");
  await host.bind(listener, { kind: "storage", stg: job.stg, port: job.port });
  await host.listen(listener, 1);
  post({ type: "listening" });
  const fd = await host.accept(listener);
  let bytes = 0;
  const startMs = performance.now();
  for (let spans = 0; spans < Number.MAX_SAFE_INTEGER; spans++) {
    const view = await host.peek(fd, job.chunkBytes);
    if (view === null) break;
    bytes += view.length;
    host.release(fd, view.length);
  }
  const elapsedMs = performance.now() - startMs;
  await host.close(fd);
  await host.close(listener);
  post({ type: "done", bytes, sha256: "", micros: [], elapsedMs });
}

/**
 * Runs one job on a host and reports through `post`; a failure is reported, not thrown.
 *
 * @param host the storage sockets (the caller disposes them)
 * @param job what to do
 * @param post where reports go
 */
export async function runHostJob(host: StorageSockets, job: HostJob, post: Post): Promise<void> {
  try {
    if (job.job === "send") await (job.zeroCopy ? sendZeroCopy : send)(host, job, post);
    else if (job.job === "ping") await ping(host, job, post);
    else if (job.job === "receive" && job.zeroCopy) await receiveZeroCopy(host, job, post);
    else await receive(host, job, post);
  } catch (error) {
    const code = error instanceof SocketError ? error.code : "EINVAL";
    post({ type: "failed", code, message: String(error), bytes: -1 });
  }
}
