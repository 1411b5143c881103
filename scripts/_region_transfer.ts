/**
 * `region recv` and `region send`: one storage connection between two processes through a
 * region file, like netcat. The receiver listens on a port of an STG, accepts once and writes
 * what arrives to stdout (or nowhere); the sender connects and sends stdin (or a test
 * pattern). Both hash what they move with SHA-256 and report on stderr.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { openRegionFile } from "../src/adapters/region_file.ts";
import { createStorageSockets, type StorageSockets } from "../src/adapters/shm.ts";
import { SocketError } from "../src/core/dispatch/errors.ts";
import { patternChunk } from "../src/adapters/_test_pattern.ts";
import type { RegionArgs } from "./region.ts";
import { parseBytes, UsageError } from "./region.ts";

const CHUNK_BYTES = 1024 * 1024;

/** Reports on stderr: one JSON line per event with `--json`, else a sentence at the end. */
function reporter(json: boolean) {
  const encoder = new TextEncoder();
  return (event: string, facts: Record<string, unknown>, sentence?: string) => {
    const line = json ? JSON.stringify({ event, ...facts }) : sentence;
    if (line !== undefined) Deno.stderr.writeSync(encoder.encode(`${line}\n`));
  };
}

function storageAddress(args: RegionArgs) {
  if (args.values.port === undefined) throw new UsageError(`${args.command} needs --port`);
  const port = Number(args.values.port);
  const stg = Number(args.values.stg?.[0] ?? "1");
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`--port ${args.values.port}: a port is 1..65535`);
  }
  if (!Number.isInteger(stg) || stg < 0 || stg > 65535) {
    throw new UsageError(`--stg ${args.values.stg?.[0]}: an STG id is 0..65535`);
  }
  return { kind: "storage" as const, stg, port };
}

/** Opens the region and a host on it, runs `body`, and always gives both back. */
async function withHost<T>(args: RegionArgs, body: (host: StorageSockets) => Promise<T>) {
  const region = openRegionFile(args.path);
  try {
    const host = createStorageSockets({ region });
    try {
      return await body(host);
    } finally {
      await host.dispose();
    }
  } finally {
    region.close();
    await region.closed;
  }
}

async function writeAll(sink: typeof Deno.stdout, bytes: Uint8Array) {
  for (let at = 0; at < bytes.length;) at += await sink.write(bytes.subarray(at));
}

/** `region recv`: listen, accept one connection, copy it out. */
export async function receiveCommand(args: RegionArgs): Promise<void> {
  const address = storageAddress(args);
  const report = reporter(args.values.json);
  const sink = args.values.discard ? undefined : Deno.stdout;
  await withHost(args, async (host) => {
    const listener = await host.socket("storage");
    await host.bind(listener, address);
    await host.listen(listener, 1);
    const { port } = await host.getsockname(listener);
    const facts = { stg: address.stg, port, hostId: host.hostId, incarnation: host.incarnation };
    report(
      "listening",
      { ...facts, pid: Deno.pid, block: host.blockOf(listener) },
      `listening on stg ${address.stg} port ${port} (host slot ${host.hostId})`,
    );
    const fd = await host.accept(listener);
    report("accepted", { ...facts, block: host.blockOf(fd) });
    await host.close(listener);
    const hash = createHash("sha256");
    const startedMs = performance.now();
    let bytes = 0;
    try {
      // Zero-copy: hash and write the bytes where they lie in the ring, then release them.
      for (let reads = 0; reads < Number.MAX_SAFE_INTEGER; reads++) {
        const view = await host.peek(fd, CHUNK_BYTES);
        if (view === null) break;
        hash.update(view);
        if (sink !== undefined) await writeAll(sink, view);
        host.release(fd, view.length);
        if (bytes === 0) report("receiving", { bytes: view.length });
        bytes += view.length;
      }
    } catch (error) {
      if (error instanceof SocketError) {
        report("failed", { code: error.code, message: error.message, bytes });
      }
      throw error;
    } finally {
      await host.close(fd).catch(() => {});
    }
    done(report, "received", bytes, hash.digest("hex"), startedMs);
  });
}

function done(
  report: ReturnType<typeof reporter>,
  verb: string,
  bytes: number,
  sha256: string,
  startedMs: number,
) {
  const seconds = (performance.now() - startedMs) / 1000;
  const megabytesPerSecond = bytes / 1e6 / Math.max(seconds, 1e-6);
  report(
    "done",
    { bytes, sha256, seconds, megabytesPerSecond },
    `${verb} ${bytes} bytes in ${seconds.toFixed(2)} s (${
      megabytesPerSecond.toFixed(0)
    } MB/s), sha256 ${sha256}`,
  );
}

/** The source `send` reads: stdin, or `--bytes` of the pattern. */
function source(args: RegionArgs): (into: Uint8Array) => Promise<number | null> {
  if (args.values.bytes !== undefined) {
    const total = parseBytes(args.values.bytes, "--bytes");
    const chunk = patternChunk(CHUNK_BYTES);
    const stamp = new DataView(chunk.buffer);
    let sent = 0;
    return (into) => {
      if (sent >= total) return Promise.resolve(null);
      stamp.setFloat64(0, sent);
      const count = Math.min(into.length, chunk.length, total - sent);
      into.set(chunk.subarray(0, count));
      sent += count;
      return Promise.resolve(count);
    };
  }
  return (into) => Deno.stdin.read(into);
}

/** `region send`: connect and send everything the source gives. */
export async function sendCommand(args: RegionArgs): Promise<void> {
  const address = storageAddress(args);
  const report = reporter(args.values.json);
  const read = source(args);
  await withHost(args, async (host) => {
    const fd = await host.socket("storage");
    try {
      await host.connect(fd, address);
    } catch (error) {
      if (error instanceof SocketError && error.code === "ECONNREFUSED") {
        throw new SocketError(
          "ECONNREFUSED",
          `nobody listens on stg ${address.stg} port ${address.port} of ${args.path} (start \`deno task region recv\` first)`,
        );
      }
      throw error;
    }
    report("connected", {
      stg: address.stg,
      port: address.port,
      hostId: host.hostId,
      incarnation: host.incarnation,
      pid: Deno.pid,
      block: host.blockOf(fd),
    });
    const hash = createHash("sha256");
    const startedMs = performance.now();
    let bytes = 0;
    // Zero-copy: read the source straight into free ring space, hash it there, commit it.
    for (let reads = 0; reads < Number.MAX_SAFE_INTEGER; reads++) {
      const view = await host.reserve(fd, CHUNK_BYTES);
      const got = await read(view);
      if (got === null) {
        host.commit(fd, 0);
        break;
      }
      hash.update(view.subarray(0, got));
      host.commit(fd, got);
      bytes += got;
    }
    await host.close(fd);
    done(report, "sent", bytes, hash.digest("hex"), startedMs);
  });
}
