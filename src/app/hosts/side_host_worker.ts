/**
 * A Worker host for one side of a job: the agent's side (listens on a well-known port of
 * 127.0.0.1, as the embedded default's client) or the server's side (toward an agent, local or
 * on another host). It attaches the job's region (a SharedArrayBuffer, or a region file it maps
 * itself), builds its sockets, runs the side, and reports over the host link
 * ({@link SideHostInput}, {@link SideHostReport}).
 *
 * The packer hashes large archives in a separate Worker; a Worker started inside a Worker takes
 * about a second to come up on Deno 2.9, so the agent side asks its supervisor for a port to one
 * (`want-hash-worker`, answered by `hash-port`).
 *
 * @module
 */

import { hostSide } from "../../adapters/host_link.ts";
import { createTcpSockets } from "../../adapters/tcp.ts";
import { createStorageSockets, type StorageSockets } from "../../adapters/shm.ts";
import { openRegionFile, type RegionFile } from "../../adapters/region_file.ts";
import { createRouter, unavailableSockets } from "../../core/dispatch/router.ts";
import { importAgentKey } from "./agent_key.ts";
import { type AgentJobOutcome, serveAgentJob } from "../agent/agent_side.ts";
import { runServerSide, type ServerSideJob, type ServerSideResult } from "../server/server_side.ts";
import { type BackupProgress, errorOrigin, errorText } from "../agent/backup_client.ts";
import type { WriterStep } from "../repository/snapshot_writer.ts";
import type { ExcludedPath } from "../agent/source_exclusions.ts";
import { freePortPair } from "./ports.ts";

/** A region as a job hands it to its hosts: shared memory, a region file's path, or none. */
export type JobRegion = SharedArrayBuffer | string | null;

/** What one side host does. */
export interface SideHostJob {
  readonly region: JobRegion;
  readonly ioTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  /** The agent key's bytes, or null (insecure). */
  readonly key: Uint8Array | null;
  readonly progressEveryMs: number;
  /** The agent's side: listen on a free port pair of 127.0.0.1, serve one job. */
  readonly agent?: {
    readonly roots: readonly string[];
    /** Paths of the source left out on purpose (the repository, when it lies inside). */
    readonly excluded: readonly ExcludedPath[];
    /** False: archive bytes are copied into the storage ring (default true: packed in place). */
    readonly zeroCopy?: boolean;
  };
  /** The server's side of a job toward an agent. */
  readonly server?: ServerSideJob & {
    /** Drill: stop at this writer step, report `paused`, and wait for a cancel. */
    readonly pauseAt?: WriterStep;
  };
}

/** What a side host receives. */
export type SideHostInput =
  | { readonly type: "job"; readonly job: SideHostJob }
  | { readonly type: "hash-port"; readonly port: MessagePort }
  | { readonly type: "cancel"; readonly reason: string };

/**
 * Where a side's failure came from: `peer` (it failed because the peer reported a failure),
 * `transport` (a socket failed, often because the peer went away), or `own` (the real cause).
 */
export type ErrorOrigin = "own" | "peer" | "transport";

/** What a side host reports. */
export type SideHostReport =
  | { readonly type: "listening"; readonly port: number }
  | { readonly type: "progress"; readonly progress: BackupProgress }
  | { readonly type: "paused"; readonly step: WriterStep }
  | { readonly type: "want-hash-worker" }
  | { readonly type: "agent-result"; readonly result: AgentJobOutcome }
  | { readonly type: "server-result"; readonly result: ServerSideResult }
  | { readonly type: "error"; readonly text: string; readonly origin: ErrorOrigin };

/** How many listening cycles the embedded agent side runs before it gives up. */
const LISTEN_CYCLES_MAX = 10;

const side = hostSide<SideHostInput, SideHostReport>();
const cancelled = new AbortController();
side.on("cancel", (message) => cancelled.abort(new Error(message.reason)));

/** Asks the supervisor for a port to a hash worker (once per job). */
function hashWorkerPort(): Promise<MessagePort> {
  side.post({ type: "want-hash-worker" });
  return side.next("hash-port", Number.POSITIVE_INFINITY).then((message) => message.port);
}

/** The drill's pause: at `pauseAt`, report it and wait until the job cancels this host. */
async function pauseForDrill(step: WriterStep, pauseAt: WriterStep | undefined): Promise<void> {
  if (step !== pauseAt || cancelled.signal.aborted) return;
  side.post({ type: "paused", step });
  await new Promise((resolve) => cancelled.signal.addEventListener("abort", resolve));
}

async function runAgent(job: SideHostJob, storage: StorageSockets | undefined) {
  const sockets = createRouter({
    network: createTcpSockets({ ioTimeoutMs: job.ioTimeoutMs }),
    storage: storage ?? unavailableSockets("storage", "no storage region is attached"),
  });
  const key = job.key === null ? null : await importAgentKey(job.key);
  let reason = "no cycle ran";
  for (let cycle = 0; cycle < LISTEN_CYCLES_MAX && !cancelled.signal.aborted; cycle++) {
    const outcome = await serveAgentJob({
      listen: { host: "127.0.0.1", port: freePortPair() },
      roots: job.agent!.roots,
      excluded: job.agent!.excluded,
      key,
      sockets,
      storage,
      zeroCopy: job.agent!.zeroCopy,
      ioTimeoutMs: job.ioTimeoutMs,
      handshakeTimeoutMs: job.handshakeTimeoutMs,
      hashWorker: hashWorkerPort,
      progressEveryMs: job.progressEveryMs,
      signal: cancelled.signal,
      onEvent: (event) => {
        if (event.type === "listening") side.post({ type: "listening", port: event.port });
        else if (event.type === "progress") side.post(event);
      },
    });
    if (outcome.status !== "no-job") return side.post({ type: "agent-result", result: outcome });
    reason = outcome.reason;
  }
  throw new Error(`the agent side set up no job channel: ${reason}`);
}

async function runServer(job: SideHostJob, storage: StorageSockets | undefined) {
  const sockets = createRouter({
    network: createTcpSockets({ ioTimeoutMs: job.ioTimeoutMs }),
    storage: storage ?? unavailableSockets("storage", "no storage region is attached"),
  });
  const server = job.server!;
  const result = await runServerSide(server, {
    sockets,
    storage,
    key: job.key === null ? null : await importAgentKey(job.key),
    ioTimeoutMs: job.ioTimeoutMs,
    handshakeTimeoutMs: job.handshakeTimeoutMs,
    signal: cancelled.signal,
    onProgress: (progress) => side.post({ type: "progress", progress }),
    onWriterStep: (step) => pauseForDrill(step, server.pauseAt),
  });
  side.post({ type: "server-result", result });
}

async function run(job: SideHostJob): Promise<void> {
  let file: RegionFile | undefined;
  let storage: StorageSockets | undefined;
  try {
    if (typeof job.region === "string") file = openRegionFile(job.region);
    const region = file ?? (typeof job.region === "string" ? null : job.region);
    storage = region === null ? undefined : createStorageSockets({ region });
    if (job.agent !== undefined) await runAgent(job, storage);
    else await runServer(job, storage);
  } finally {
    await storage?.dispose();
    file?.close();
    await file?.closed;
  }
}

const { job } = await side.next("job", Number.POSITIVE_INFINITY);
await run(job).catch((error) =>
  side.post({ type: "error", text: errorText(error), origin: errorOrigin(error) })
);
