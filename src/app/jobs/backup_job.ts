/**
 * A whole backup job on one machine, the embedded default of `deno task backup`: formats the
 * storage region, starts the agent's side (the client, which owns the data) and the server's
 * side (the repository), each in its own Worker host, lets them set up their channels exactly as
 * an agent on another host and a server would (the job channel on 127.0.0.1, the agent key,
 * the data flow of the mode), and reports what happened. When the storage path cannot be set up
 * the data falls back to the network (unless told not to) and the summary says why.
 *
 * @module
 */

import { HANDSHAKE_TIMEOUT_MS_DEFAULT } from "../../core/handshake/config.ts";
import { formatRegion } from "../../core/stp/region.ts";
import type { RegionConfig } from "../../core/stp/layout.ts";
import { workerHostsRunning } from "../../adapters/host_link.ts";
import type { BackupClientResult, BackupProgress } from "../agent/backup_client.ts";
import { type ExcludedPath, repositoryExclusion } from "../agent/source_exclusions.ts";
import type { WriterStep } from "../repository/snapshot_writer.ts";
import { BackupJobError, blocksHeldIn, jobErrorMessage, runSides } from "./job_hosts.ts";
import type { JobRegion } from "../hosts/side_host.ts";
import type { ServerSideResult } from "../server/server_side.ts";
import type { BackupJobRequest } from "./jobs.ts";
import { canonicalPath } from "../paths.ts";
import { listSnapshotIds, openRepository } from "../repository/repository.ts";

export { BackupJobError, jobErrorMessage };

/**
 * Options of {@link runBackupJob}: the job options every front uses (`BackupJobSchema`, without
 * `kind` and `agent`: the agent's side runs here), and what only this runner takes.
 */
export interface BackupJobOptions extends Omit<BackupJobRequest, "kind" | "agent" | "source"> {
  /** The directory to back up (fs mode); in db mode the database when `db` is not given. */
  readonly source?: string | undefined;
  /** Size of the storage region in MiB; 0 attaches none. Default 64. */
  readonly regionMib?: number;
  /**
   * False makes the agent copy archive bytes into the storage ring from its staging buffers
   * (the bench's `backup-e2e-copy` row, and a fallback) instead of packing them in place there.
   * Default true.
   */
  readonly zeroCopy?: boolean;
  /** Control blocks in the region. Default 64. */
  readonly controlBlocks?: number;
  /** A region to use instead of a fresh one: shared memory, or a region file's path. */
  readonly region?: SharedArrayBuffer | string;
  /** How long to wait for another backup's repository lock, ms (default 30 000). */
  readonly lockWaitMs?: number;
  /** Bound of every socket wait, ms (default 30 000). */
  readonly ioTimeoutMs?: number;
  /** Bound of each handshake, ms (default {@link HANDSHAKE_TIMEOUT_MS_DEFAULT}, 5000). */
  readonly handshakeTimeoutMs?: number;
  /** Called with the client's progress while the archive streams. */
  readonly onProgress?: (progress: BackupProgress) => void;
  /** Aborts the job (the snapshot is then not committed). */
  readonly signal?: AbortSignal;
  /** How long a host of a fresh region may go without renewing its lease, ms (default 2000). */
  readonly leaseMs?: number;
  /** Drill: terminate the client host once it reported at least this many bytes. */
  readonly interruptClientAfterBytes?: number;
  /**
   * Drill: the same in the first attempt only (the storage path, when the region is there): the
   * storage system failing mid-job. With `auto` the job then runs again over the network.
   */
  readonly failStorageAfterBytes?: number;
  /** How often the client reports progress, ms (default 250). */
  readonly progressEveryMs?: number;
  /** Drill: the server stops at this writer step and waits there until the job is cancelled. */
  readonly pauseServerAt?: WriterStep;
  /** Drill: called when the server has stopped at `pauseServerAt`. */
  readonly onServerPaused?: (step: WriterStep) => void;
}

/** What a backup job did. */
export interface BackupJobSummary {
  /** The new snapshot's id. */
  readonly snapshot: string;
  /** The snapshot it is incremental to, or null. */
  readonly parent: string | null;
  /** Why an incremental backup that was asked for is full (see `chooseParent`), else null. */
  readonly fullReason: string | null;
  /** The source as recorded in the manifest. */
  readonly source: string;
  /** The handshake flow used. */
  readonly mode: "fs" | "db";
  /** The channel the data went through. */
  readonly dataPath: "storage" | "network";
  /** Why the data went over the network when storage was tried first, or null. */
  readonly fallbackReason: string | null;
  /** Files archived in this snapshot (new or changed). */
  readonly files: number;
  /** Files in the snapshot, unchanged ones included. */
  readonly filesTotal: number;
  /** File bytes archived in this snapshot. */
  readonly fileBytes: number;
  /** Size of this snapshot's tar archive. */
  readonly archiveBytes: number;
  /** Bytes that went through the storage region. */
  readonly storageBytes: number;
  /** Bytes that went over the network. */
  readonly networkBytes: number;
  /**
   * The agent's archive frames: packed in place in the storage ring, or sent from a buffer (a
   * copy; the network path, and a ring span too small for a frame).
   */
  readonly dataFrames: { readonly inPlace: number; readonly copied: number };
  /**
   * The server's archive frames: written to the archive straight from the storage ring (lent),
   * or received into a buffer first (a copy; the network path, and a frame that wraps).
   */
  readonly receivedFrames: { readonly lent: number; readonly copied: number };
  /** Entries left out, each with the reason. */
  readonly skipped: ReadonlyArray<{ readonly path: string; readonly reason: string }>;
  /** Paths of the source left out on purpose (the repository, when it lies inside). */
  readonly excluded: readonly ExcludedPath[];
  /** How long the job took. */
  readonly seconds: number;
  /** File bytes archived per second, in MB (10^6 bytes). */
  readonly megabytesPerSecond: number;
}

/** The region geometry for a job: 8 MiB extents (one ring each), as the benchmarks size them. */
export function jobRegionConfig(
  regionMib: number,
  controlBlocks: number,
  ioTimeoutMs: number,
  leaseMs = 2000,
): RegionConfig {
  const extentBytes = 8 * 1024 * 1024;
  return {
    stgs: [{
      id: 1,
      extentCount: Math.max(2, Math.floor((regionMib * 1024 * 1024) / extentBytes)),
      ephemeralPortMin: 49152,
      ephemeralPortMax: 50175,
    }],
    extentBytes,
    blockCount: controlBlocks,
    hostCount: 8,
    ioTimeoutMs,
    leaseMs,
    backlogMax: 4,
  };
}

/** How many Worker hosts (client, server) run in this process right now. */
export function backupHostsRunning(): number {
  return workerHostsRunning();
}

/** Control blocks held in a region by anyone (a janitor holds none). */
export function blocksHeld(region: SharedArrayBuffer): number {
  return blocksHeldIn(region);
}

/** The job's region: the one given, a fresh one, or none (no region, or the network on purpose). */
function jobRegion(options: BackupJobOptions, ioTimeoutMs: number): JobRegion {
  if (options.region !== undefined) return options.region;
  const regionMib = options.regionMib ?? 64;
  if (regionMib === 0 || options.channel === "network") return null;
  const formatted = formatRegion(
    jobRegionConfig(regionMib, options.controlBlocks ?? 64, ioTimeoutMs, options.leaseMs),
    crypto.randomUUID(),
  );
  if (!formatted.ok) {
    throw new BackupJobError(`the storage region could not be formatted: ${formatted.message}`);
  }
  return formatted.value;
}

/**
 * Runs a backup job.
 *
 * @param requested source, repository, mode, channel policy, region geometry
 * @returns the summary
 * @throws BackupJobError with the reason when the backup failed (the repository is unchanged)
 */
export async function runBackupJob(requested: BackupJobOptions): Promise<BackupJobSummary> {
  const startedMs = performance.now();
  const source = requested.mode === "db" ? requested.db ?? requested.source : requested.source;
  if (source === undefined) {
    throw new BackupJobError(requested.mode === "db" ? "db mode needs db" : "source is needed");
  }
  const excluded = requested.mode === "fs" ? await repositoryExclusion(source, requested.repo) : [];
  const ioTimeoutMs = requested.ioTimeoutMs ?? 30_000;
  const region = jobRegion(requested, ioTimeoutMs);
  const base = {
    region,
    ioTimeoutMs,
    handshakeTimeoutMs: requested.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS_DEFAULT,
    key: crypto.getRandomValues(new Uint8Array(32)), // this job's agent key, known to both sides
    progressEveryMs: requested.progressEveryMs ?? 250,
  };
  const roots = [await canonicalPath(source)];
  const attempt = (channel: BackupJobOptions["channel"], drillBytes?: number) =>
    runSides({
      region,
      agent: { ...base, agent: { roots, excluded, zeroCopy: requested.zeroCopy ?? true } },
      server: {
        ...base,
        server: {
          kind: "backup",
          agent: { host: "127.0.0.1", port: 1 }, // filled in once the agent side listens
          mode: requested.mode,
          channel,
          source,
          incremental: requested.incremental,
          repo: requested.repo,
          lockWaitMs: requested.lockWaitMs ?? 30_000,
          pauseAt: requested.pauseServerAt,
        },
      },
      repo: requested.repo,
      progressFrom: "agent",
      onProgress: requested.onProgress,
      signal: requested.signal,
      interruptAgentAfterBytes: drillBytes,
      onServerPaused: requested.onServerPaused,
    });
  const first = requested.interruptClientAfterBytes ?? requested.failStorageAfterBytes;
  const fallback = requested.channel === "auto" && region !== null;
  const before = fallback ? await committedIds(requested.repo) : [];
  try {
    const { server } = await attempt(requested.channel, first);
    return backupSummary(server, requested.mode, excluded, startedMs);
  } catch (error) {
    if (!fallback || !(await midJobFallback(error, requested, before))) throw error;
    const { server } = await attempt("network", requested.interruptClientAfterBytes);
    const reason = `the storage path failed mid-job (${(error as Error).message}); nothing was ` +
      "committed, so the backup ran again over the network";
    return {
      ...backupSummary(server, requested.mode, excluded, startedMs),
      fallbackReason: reason,
    };
  }
}

/** Ids of the repository's committed snapshots (none when it does not exist yet). */
async function committedIds(repo: string): Promise<string[]> {
  return await openRepository(repo).then(listSnapshotIds, () => []);
}

/**
 * Whether a failed `auto` attempt gives way to the network: the channels failed (no side failed
 * for a reason of its own: a lost lease, a reset), the job was not cancelled, and no snapshot
 * was committed meanwhile (a backup is never committed twice).
 */
async function midJobFallback(
  error: unknown,
  requested: BackupJobOptions,
  before: readonly string[],
): Promise<boolean> {
  if (!(error instanceof BackupJobError) || !error.transport) return false;
  if (requested.signal?.aborted === true) return false;
  const after = await committedIds(requested.repo);
  return after.every((id) => before.includes(id));
}

/**
 * A backup's summary from the server's side of it (the agent's own counts are in its result).
 *
 * @param server what the server's side reported
 * @param mode the handshake flow
 * @param excluded what the walk left out on purpose
 * @param startedMs when the job started
 * @returns the summary
 */
export function backupSummary(
  server: ServerSideResult,
  mode: "fs" | "db",
  excluded: readonly ExcludedPath[],
  startedMs: number,
): BackupJobSummary {
  if (server.kind !== "backup") throw new BackupJobError(`a ${server.kind} is no backup`);
  const manifest = server.backup.manifest;
  const client = server.agent as unknown as BackupClientResult;
  const seconds = (performance.now() - startedMs) / 1000;
  return {
    snapshot: manifest.id,
    parent: manifest.parent,
    fullReason: server.backup.fullReason,
    source: manifest.source,
    mode,
    dataPath: server.dataPath,
    fallbackReason: server.fallbackReason,
    files: client.files,
    filesTotal: manifest.fileCount,
    fileBytes: client.fileBytes,
    archiveBytes: manifest.archiveBytes,
    storageBytes: manifest.channelBytes.storage,
    networkBytes: manifest.channelBytes.network,
    dataFrames: client.dataFrames ?? { inPlace: 0, copied: 0 },
    receivedFrames: server.backup.receivedFrames,
    skipped: client.skipped,
    excluded,
    seconds,
    megabytesPerSecond: client.fileBytes / 1e6 / Math.max(seconds, 1e-6),
  };
}
