/**
 * A storage host in a Worker, for the integration tests and the benchmark. It receives one job,
 * runs it through `createStorageSockets` on the shared region, and posts the outcome.
 *
 * Jobs: `receive` (listen on a port, accept once, read to end of stream, report bytes and
 * SHA-256), `send` (connect, send `totalBytes` of a pattern in `chunkBytes` sends, report bytes
 * and SHA-256), `echo` (accept once, send back every message) and `ping` (connect, time
 * `rounds` round trips of `chunkBytes`).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { SocketError } from "../core/dispatch/errors.ts";
import { createStorageSockets, type StorageSockets } from "./shm.ts";
import { patternChunk } from "./_test_pattern.ts";

/** A job for a worker host. */
export interface HostJob {
  readonly job: "receive" | "send" | "echo" | "ping";
  readonly region: SharedArrayBuffer;
  readonly stg: number;
  readonly port: number;
  readonly totalBytes: number;
  readonly chunkBytes: number;
  readonly rounds: number;
  /** Whether to hash the bytes (default true; the benchmark turns it off). */
  readonly hash?: boolean;
  /** How the host waits (default: the adapter's choice for a Worker, `sync`). */
  readonly waitMode?: "sync" | "async";
}

/** What a worker host reports. */
export type HostReport =
  | { readonly kind: "listening" }
  | { readonly kind: "progress"; readonly bytes: number }
  | {
    readonly kind: "done";
    readonly bytes: number;
    readonly sha256: string;
    readonly micros: number[];
    readonly elapsedMs: number;
  }
  | {
    readonly kind: "failed";
    readonly code: string;
    readonly message: string;
    readonly bytes: number;
  };

/** The Worker global scope, typed for what this script uses. */
const scope = self as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent<HostJob>) => void) | null;
  close(): void;
};
const post = (report: HostReport) => scope.postMessage(report);

async function receive(host: StorageSockets, job: HostJob, echo: boolean): Promise<void> {
  const listener = await host.socket("storage");
  await host.bind(listener, { kind: "storage", stg: job.stg, port: job.port });
  await host.listen(listener, 1);
  post({ kind: "listening" });
  const fd = await host.accept(listener);
  const hash = createHash("sha256");
  const into = new Uint8Array(job.chunkBytes);
  let bytes = 0;
  const startMs = performance.now();
  for (let i = 0; i < Number.MAX_SAFE_INTEGER; i++) {
    const n = await host.recv(fd, into).catch((error) => {
      if (error instanceof SocketError) {
        post({ kind: "failed", code: error.code, message: error.message, bytes });
      }
      throw error;
    });
    if (n === null) break;
    if (echo) await host.send(fd, into.subarray(0, n));
    else if (job.hash !== false) hash.update(into.subarray(0, n));
    if (bytes === 0) post({ kind: "progress", bytes: n });
    bytes += n;
  }
  const elapsedMs = performance.now() - startMs;
  await host.close(fd);
  await host.close(listener);
  post({ kind: "done", bytes, sha256: hash.digest("hex"), micros: [], elapsedMs });
}

async function send(host: StorageSockets, job: HostJob): Promise<void> {
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
  post({ kind: "done", bytes, sha256: hash.digest("hex"), micros: [], elapsedMs });
}

async function ping(host: StorageSockets, job: HostJob): Promise<void> {
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
  post({ kind: "done", bytes: job.rounds * message.length, sha256: "", micros, elapsedMs: 0 });
}

scope.onmessage = async (event: MessageEvent<HostJob>) => {
  const job = event.data;
  const host = createStorageSockets({
    region: job.region,
    ...(job.waitMode === undefined ? {} : { waitMode: job.waitMode }),
  });
  try {
    if (job.job === "send") await send(host, job);
    else if (job.job === "ping") await ping(host, job);
    else await receive(host, job, job.job === "echo");
  } catch (error) {
    const code = error instanceof SocketError ? error.code : "EINVAL";
    post({ kind: "failed", code, message: String(error), bytes: -1 });
  } finally {
    await host.dispose();
    scope.close();
  }
};
