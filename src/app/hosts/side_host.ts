/**
 * What a job's side hosts share: the messages between a side host and its supervisor
 * (`job_hosts.ts`), and {@link serveSideHost}, the frame both hosts run in (take the job,
 * attach its region, build the storage sockets, run the side, report its error, dispose).
 *
 * Each side has a Worker entry of its own, so a host loads only its role's module graph:
 * `agent_host_worker.ts` (the client: the walk, the packer, the restore writer) and
 * `server_host_worker.ts` (the repository: the backup server, the restore sender). The
 * supervisor starts both at once and gives the server its job once the agent listens.
 *
 * The packer hashes large archives in a separate Worker; a Worker started inside a Worker takes
 * about a second to come up on Deno 2.9, so the agent side asks its supervisor for a port to one
 * (`want-hash-worker`, answered by `hash-port`).
 *
 * @module
 */

import { type HostSide, hostSide } from "../../adapters/host_link.ts";
import { createStorageSockets, type StorageSockets } from "../../adapters/shm.ts";
import { openRegionFile, type RegionFile } from "../../adapters/region_file.ts";
import { type BackupProgress, errorOrigin, errorText } from "./peer_reports.ts";
import type { AgentJobOutcome } from "../agent/agent_side.ts";
import type { ServerSideJob, ServerSideResult } from "../server/server_side.ts";
import type { WriterStep } from "../repository/snapshot_writer.ts";
import type { ExcludedPath } from "../agent/source_exclusions.ts";

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
  /** The server's writer passed its commit point: a later cancel keeps the snapshot. */
  | { readonly type: "committed" }
  | { readonly type: "want-hash-worker" }
  | { readonly type: "agent-result"; readonly result: AgentJobOutcome }
  | { readonly type: "server-result"; readonly result: ServerSideResult }
  | { readonly type: "error"; readonly text: string; readonly origin: ErrorOrigin };

/** A side host's end of its link, and the job's cancel signal. */
export interface SideHostContext {
  readonly link: HostSide<SideHostInput, SideHostReport>;
  /** Aborted when the supervisor cancels the job (`cancel`), with its reason. */
  readonly cancelled: AbortSignal;
}

/** One side's work, given its job, its storage sockets (none without a region) and its link. */
export type SideRunner = (
  job: SideHostJob,
  storage: StorageSockets | undefined,
  context: SideHostContext,
) => Promise<void>;

/**
 * Serves one side host: waits for its job, attaches the job's region (shared memory, or a
 * region file mapped here), runs the side, and reports a failure as an `error` with its origin;
 * the sockets and the region file are disposed of whatever happened.
 *
 * @param runSide the side's work (it posts its own result)
 * @returns once the side ended and everything is disposed of
 */
export async function serveSideHost(runSide: SideRunner): Promise<void> {
  const link = hostSide<SideHostInput, SideHostReport>();
  const cancel = new AbortController();
  link.on("cancel", (message) => cancel.abort(new Error(message.reason)));
  const { job } = await link.next("job", Number.POSITIVE_INFINITY);
  const context = { link, cancelled: cancel.signal };
  // Disposed of before a failure is reported: the supervisor may end the host on the report.
  await withRegion(job, (storage) => runSide(job, storage, context)).catch((error) =>
    link.post({ type: "error", text: errorText(error), origin: errorOrigin(error) })
  );
}

/** Runs `use` with the job's storage sockets (none without a region), disposed of after. */
async function withRegion(
  job: SideHostJob,
  use: (storage: StorageSockets | undefined) => Promise<void>,
): Promise<void> {
  let file: RegionFile | undefined;
  let storage: StorageSockets | undefined;
  try {
    if (typeof job.region === "string") file = openRegionFile(job.region);
    const region = file ?? (typeof job.region === "string" ? null : job.region);
    storage = region === null ? undefined : createStorageSockets({ region });
    await use(storage);
  } finally {
    await storage?.dispose();
    file?.close();
    await file?.closed;
  }
}
