/**
 * Jobs whose client part runs on an agent (`deno task agent`, usually another host): the server
 * runs its side in a Worker host (`server_host_worker.ts`) toward the agent's address, over the
 * job's region (a region file both hosts map, shared memory, or none). Backups write this
 * server's repository; restores stream it to the agent, which writes the target; validations
 * move test payloads through every path (`validate.ts`).
 *
 * @module
 */

import { HANDSHAKE_TIMEOUT_MS_DEFAULT } from "../../core/handshake/config.ts";
import type { JobRegion } from "../hosts/side_host.ts";
import { runSides } from "./job_hosts.ts";
import type { ServerSideJob, ServerSideResult } from "../server/server_side.ts";
import type { BackupProgress } from "../agent/backup_client.ts";
import type { BackupJobRequest, RestoreJobRequest } from "./jobs.ts";
import { type BackupJobSummary, backupSummary } from "./backup_job.ts";
import type { RestoreProblem } from "../repository/restore.ts";
import type { WriterStep } from "../repository/snapshot_writer.ts";

/** What a job toward an agent needs besides its request. */
export interface AgentJobOptions {
  /** The server's region: a region file's path, shared memory, or null. */
  readonly region: JobRegion;
  /** The agent key's bytes, or null (insecure: only an agent without a key passes). */
  readonly key: Uint8Array | null;
  /** Bound of every socket wait, ms (default 30 000). */
  readonly ioTimeoutMs?: number;
  /** Bound of each handshake, ms (default {@link HANDSHAKE_TIMEOUT_MS_DEFAULT}, 5000). */
  readonly handshakeTimeoutMs?: number;
  /** How long to wait for another backup's repository lock, ms (default 30 000). */
  readonly lockWaitMs?: number;
  /** Called with the agent's progress (files, bytes, total bytes) and this side's channel bytes. */
  readonly onProgress?: (progress: BackupProgress) => void;
  /** Cancels the job (a backup's snapshot is then aborted). */
  readonly signal?: AbortSignal;
  /** Drill: the server stops at this writer step until the job is cancelled. */
  readonly pauseServerAt?: WriterStep;
  /** Drill: called when the server has stopped at `pauseServerAt`. */
  readonly onServerPaused?: (step: WriterStep) => void;
}

/** What a restore through an agent did. */
export interface RestoreJobSummary {
  /** The snapshot restored. */
  readonly snapshot: string;
  /** The source it was backed up from. */
  readonly source: string;
  /** The agent (`host:port`). */
  readonly agent: string;
  /** The target on the agent (canonical). */
  readonly target: string;
  /** The handshake flow used. */
  readonly mode: "fs" | "db";
  /** Regular files written. */
  readonly files: number;
  /** Directories made. */
  readonly dirs: number;
  /** Symlinks made. */
  readonly symlinks: number;
  /** File bytes written. */
  readonly bytes: number;
  /** The channel the data went through. */
  readonly dataPath: "storage" | "network";
  /** Why the data went over the network when storage was tried first, or null. */
  readonly fallbackReason: string | null;
  /** Bytes that went through the storage region (sent and received, frame headers included). */
  readonly storageBytes: number;
  /** Bytes that went over the network (the data session's). */
  readonly networkBytes: number;
  /** How long the job took. */
  readonly seconds: number;
  /** File bytes written per second, in MB (10^6 bytes). */
  readonly megabytesPerSecond: number;
  /** True when every entry was restored. */
  readonly ok: boolean;
  /** Entries not restored (empty when everything was). */
  readonly problems: readonly RestoreProblem[];
  /**
   * The agent's data frames: written to files straight from the storage ring (lent), or
   * received into a buffer first (a copy; the network path, and a frame not whole in the ring).
   */
  readonly receivedFrames: { readonly lent: number; readonly copied: number };
  /** The server's file pieces: read straight into the storage ring, or sent by copy. */
  readonly sentPieces: { readonly inPlace: number; readonly copied: number };
}

/**
 * Splits `host:port` (an IPv6 host in brackets).
 *
 * @param address the agent's address
 * @returns host and port
 */
export function parseAgentAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  const host = address.slice(0, at).replace(/^\[(.*)\]$/, "$1");
  const port = Number(address.slice(at + 1));
  if (at <= 0 || host === "" || !Number.isInteger(port) || port < 1 || port > 65534) {
    throw new RangeError(`agent address ${address} is not host:port`);
  }
  return { host, port };
}

/**
 * Runs the server's side of a job toward an agent, in a Worker host.
 *
 * @param job what to do, with which agent
 * @param options region, key, bounds, progress, cancel, drills
 * @param repo the repository a backup writes (its leftovers are removed if the host dies)
 * @returns what the server's side did
 */
export async function runTowardAgent(
  job: ServerSideJob,
  options: AgentJobOptions,
  repo?: string,
): Promise<ServerSideResult> {
  const { server } = await runSides({
    region: options.region,
    server: {
      region: options.region,
      ioTimeoutMs: options.ioTimeoutMs ?? 30_000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS_DEFAULT,
      key: options.key,
      progressEveryMs: 250,
      server: { ...job, pauseAt: options.pauseServerAt },
    },
    repo,
    progressFrom: "server",
    onProgress: options.onProgress,
    signal: options.signal,
    onServerPaused: options.onServerPaused,
  });
  return server;
}

/**
 * Backs up a tree (or a database) of an agent into a repository of this server.
 *
 * @param request the job (`agent` set; `source`/`db` are the agent's, `repo` this server's)
 * @param options region, key, bounds, progress, cancel
 * @returns the backup's summary, as the embedded backup gives it
 */
export async function runAgentBackup(
  request: BackupJobRequest & { readonly agent: string },
  options: AgentJobOptions,
): Promise<BackupJobSummary> {
  const startedMs = performance.now();
  const source = request.mode === "db" ? request.db : request.source;
  if (source === undefined) throw new RangeError(`mode ${request.mode} needs its source`);
  const server = await runTowardAgent(
    {
      kind: "backup",
      agent: parseAgentAddress(request.agent),
      mode: request.mode,
      channel: request.channel,
      source,
      incremental: request.incremental,
      repo: request.repo,
      lockWaitMs: options.lockWaitMs ?? 30_000,
    },
    options,
    request.repo,
  );
  return backupSummary(server, request.mode, [], startedMs);
}

/**
 * Restores a snapshot of this server's repository into a directory of an agent: the archive
 * chain streams through the data channel, the agent writes it with the local restore's checks.
 *
 * @param request the job (`agent` set; `target` is the agent's, `repo` this server's)
 * @param options region, key, bounds, progress, cancel
 * @returns the summary (`ok` false and `problems` listed when some entries were not restored)
 */
export async function runAgentRestore(
  request: RestoreJobRequest & { readonly agent: string },
  options: AgentJobOptions,
): Promise<RestoreJobSummary> {
  const startedMs = performance.now();
  const server = await runTowardAgent({
    kind: "restore",
    agent: parseAgentAddress(request.agent),
    mode: request.mode,
    channel: request.channel,
    repo: request.repo,
    snapshot: request.snapshot,
    source: request.source,
    target: request.target,
    path: request.path,
    overwrite: request.overwrite,
    preservePermissions: request.preservePermissions,
  }, options);
  if (server.kind !== "restore") throw new Error(`a ${server.kind} is no restore`);
  const written = server.agent as {
    files: number;
    dirs: number;
    symlinks: number;
    bytes: number;
    ok: boolean;
    problems: RestoreProblem[];
    receivedFrames?: { lent: number; copied: number };
  };
  const seconds = (performance.now() - startedMs) / 1000;
  return {
    snapshot: server.restore.snapshot,
    source: server.restore.source,
    agent: request.agent,
    target: server.agentPath ?? request.target,
    mode: request.mode,
    files: written.files,
    dirs: written.dirs,
    symlinks: written.symlinks,
    bytes: written.bytes,
    dataPath: server.dataPath,
    fallbackReason: server.fallbackReason,
    storageBytes: server.bytes.storage,
    networkBytes: server.bytes.network,
    seconds,
    megabytesPerSecond: written.bytes / 1e6 / Math.max(seconds, 1e-6),
    ok: written.ok,
    problems: written.problems,
    receivedFrames: written.receivedFrames ?? { lent: 0, copied: 0 },
    sentPieces: server.restore.pieces,
  };
}
