/**
 * A whole backup job on one machine: formats the storage region, starts the client and the
 * server, each in its own Worker host, lets them set up their channels and run the backup, and
 * reports what happened. When the storage path cannot be set up it falls back to the network
 * data path (unless told not to) and says why.
 *
 * @module
 */

import { formatRegion } from "../core/stp/region.ts";
import type { RegionConfig } from "../core/stp/layout.ts";
import { usageOfBuffer } from "../core/stp/usage.ts";
import type { FailureReason } from "../core/handshake/types.ts";
import { createStorageSockets } from "../adapters/shm.ts";
import { type BackupHostJob, type ErrorOrigin, listensFirst } from "./backup_host_worker.ts";
import type { BackupClientResult, BackupProgress } from "./backup_client.ts";
import type { BackupServerResult } from "./backup_server.ts";
import { freePortPair } from "./ports.ts";
import { type ExcludedPath, repositoryExclusion } from "./source_exclusions.ts";
import { removeLeftovers, type WriterStep } from "./snapshot_writer.ts";
import { listSnapshotIds, openRepository } from "./repository.ts";

const WORKER = new URL("./backup_host_worker.ts", import.meta.url);
const HASH_WORKER = new URL("./_hash_worker.ts", import.meta.url);
const PORT_ATTEMPTS_MAX = 5;
/** How long a failed client's job waits for the server's account of the failure. */
const ERROR_GRACE_MS = 2_000;
/** How long a cancelled job waits for its hosts to stop on their own before terminating them. */
const CANCEL_GRACE_MS = 10_000;

/** Options of {@link runBackupJob}: the CLI's, validated. */
export interface BackupJobOptions {
  /** The directory (fs mode) or the SQLite database file (db mode). */
  readonly source: string;
  /** The repository; created if missing or empty. */
  readonly repo: string;
  /** `fs`: the file-system flow (server initiates); `db`: the database flow (client initiates). */
  readonly mode: "fs" | "db";
  /** Only what changed since the latest snapshot of the same source. */
  readonly incremental: boolean;
  /** `auto`: storage, else the network with the reason; `storage`: storage or fail; `network`. */
  readonly channel: "storage" | "network" | "auto";
  /** Size of the storage region in MiB; 0 attaches none. Default 64. */
  readonly regionMib?: number;
  /** Control blocks in the region. Default 64. */
  readonly controlBlocks?: number;
  /** A region to use instead of a fresh one (tests inspect it afterwards). */
  readonly region?: SharedArrayBuffer;
  /** How long to wait for another backup's repository lock, ms (default 30 000). */
  readonly lockWaitMs?: number;
  /** Bound of every socket wait, ms (default 30 000). */
  readonly ioTimeoutMs?: number;
  /** Bound of each handshake, ms (default 5000). */
  readonly handshakeTimeoutMs?: number;
  /** How long a host of the region may go without renewing its lease, ms (default 2000). */
  readonly leaseMs?: number;
  /** Called with the client's progress while the archive streams. */
  readonly onProgress?: (progress: BackupProgress) => void;
  /** Aborts the job (the snapshot is then not committed). */
  readonly signal?: AbortSignal;
  /** Drill: terminate the client host once it reported at least this many bytes. */
  readonly interruptClientAfterBytes?: number;
  /** Drill: the same, on the storage path only (the storage system failing mid-job). */
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
  /** Entries left out, each with the reason. */
  readonly skipped: ReadonlyArray<{ readonly path: string; readonly reason: string }>;
  /** Paths of the source left out on purpose (the repository, when it lies inside). */
  readonly excluded: readonly ExcludedPath[];
  /** How long the job took. */
  readonly seconds: number;
  /** File bytes archived per second, in MB (10^6 bytes). */
  readonly megabytesPerSecond: number;
}

/** A job's options with what it leaves out of the source. */
type JobWithExclusions = BackupJobOptions & { readonly excluded: readonly ExcludedPath[] };

/** A backup that did not happen, with the reason in words. */
export class BackupJobError extends Error {
  /**
   * Makes the error.
   *
   * @param message why the backup did not happen, with the facts
   * @param transport the channels failed (no side reported a cause of its own)
   */
  constructor(message: string, readonly transport = false) {
    super(message);
    this.name = "BackupJobError";
  }
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
    hostCount: 4,
    ioTimeoutMs,
    leaseMs,
    backlogMax: 4,
  };
}

type Attempt =
  | {
    readonly kind: "done";
    readonly client: BackupClientResult;
    readonly server: BackupServerResult;
  }
  | { readonly kind: "handshake-failed"; readonly reason: FailureReason };

/**
 * Runs a backup job.
 *
 * @param options source, repository, mode, channel policy, region geometry
 * @returns the summary
 * @throws BackupJobError with the reason when the backup failed (the repository is unchanged)
 */
export async function runBackupJob(
  requested: BackupJobOptions,
): Promise<BackupJobSummary> {
  const startedMs = performance.now();
  const excluded = requested.mode === "fs"
    ? await repositoryExclusion(requested.source, requested.repo)
    : [];
  const options = { ...requested, excluded };
  const ioTimeoutMs = options.ioTimeoutMs ?? 30_000;
  const regionMib = options.regionMib ?? 64;
  let region: SharedArrayBuffer | null = options.region ?? null;
  let fallbackReason: string | null = null;
  if (region === null && regionMib > 0 && options.channel !== "network") {
    const formatted = formatRegion(
      jobRegionConfig(regionMib, options.controlBlocks ?? 64, ioTimeoutMs, options.leaseMs),
      crypto.randomUUID(),
    );
    if (!formatted.ok) {
      fallbackReason = `the storage region could not be formatted: ${formatted.message}`;
    } else region = formatted.value;
  }
  if (region === null && fallbackReason === null && options.channel !== "network") {
    fallbackReason = "no storage region is attached";
  }
  let path: "storage" | "network" = options.channel === "network" || region === null
    ? "network"
    : "storage";
  let attempt: Attempt | undefined;
  if (path === "storage") {
    const storage = await tryStorage(options, region!, ioTimeoutMs);
    attempt = storage.attempt;
    if (attempt === undefined) {
      fallbackReason = storage.fallbackReason;
      path = "network";
    }
  }
  if (path === "network" && options.channel === "storage") {
    throw new BackupJobError(`--channel storage: ${fallbackReason}`);
  }
  attempt ??= await attemptWithPorts(options, "network", null, ioTimeoutMs);
  if (attempt.kind === "handshake-failed") {
    throw new BackupJobError(`the network path could not be set up: ${describe(attempt.reason)}`);
  }
  return summarize(
    options,
    attempt,
    path,
    options.channel === "network" ? null : fallbackReason,
    startedMs,
  );
}

/** Ids of the repository's committed snapshots (none when it does not exist yet). */
async function committedIds(repo: string): Promise<string[]> {
  return await openRepository(repo).then(listSnapshotIds, () => []);
}

/**
 * The storage attempt. With `auto`, a storage path that cannot be set up, or that fails mid-job
 * on the channels' side (no side failed for a reason of its own: a lost lease, a reset) before
 * any snapshot was committed, gives way to the network path, with the reason. A failure after a
 * commit, or for a reason of the source or the repository, is the job's failure.
 */
async function tryStorage(
  options: JobWithExclusions,
  region: SharedArrayBuffer,
  ioTimeoutMs: number,
): Promise<{ attempt?: Extract<Attempt, { kind: "done" }>; fallbackReason: string | null }> {
  const before = options.channel === "auto" ? await committedIds(options.repo) : undefined;
  try {
    const attempt = await attemptWithPorts(options, "storage", region, ioTimeoutMs);
    if (attempt.kind === "done") return { attempt, fallbackReason: null };
    return { fallbackReason: `the storage path could not be set up: ${describe(attempt.reason)}` };
  } catch (error) {
    const retry = before !== undefined && error instanceof BackupJobError && error.transport &&
      options.signal?.aborted !== true;
    if (!retry) throw error;
    const after = await committedIds(options.repo);
    if (after.some((id) => !before.includes(id))) throw error; // committed: never twice
    return {
      fallbackReason: `the storage path failed mid-job (${error.message}); nothing was ` +
        "committed, so the backup ran again over the network",
    };
  }
}

function describe(reason: FailureReason): string {
  return `${reason.code} at step ${reason.step} (${reason.origin}): ${reason.message}`;
}

function summarize(
  options: JobWithExclusions,
  attempt: Extract<Attempt, { kind: "done" }>,
  dataPath: "storage" | "network",
  fallbackReason: string | null,
  startedMs: number,
): BackupJobSummary {
  const manifest = attempt.server.manifest;
  const seconds = (performance.now() - startedMs) / 1000;
  return {
    snapshot: manifest.id,
    parent: manifest.parent,
    fullReason: attempt.server.fullReason,
    source: manifest.source,
    mode: options.mode,
    dataPath,
    fallbackReason,
    files: attempt.client.files,
    filesTotal: manifest.fileCount,
    fileBytes: attempt.client.fileBytes,
    archiveBytes: manifest.archiveBytes,
    storageBytes: manifest.channelBytes.storage,
    networkBytes: manifest.channelBytes.network,
    skipped: attempt.client.skipped,
    excluded: options.excluded,
    seconds,
    megabytesPerSecond: attempt.client.fileBytes / 1e6 / Math.max(seconds, 1e-6),
  };
}

async function attemptWithPorts(
  options: JobWithExclusions,
  path: "storage" | "network",
  region: SharedArrayBuffer | null,
  ioTimeoutMs: number,
): Promise<Attempt> {
  for (let tries = 1;; tries++) {
    const attempt = await attemptOnce(options, path, region, ioTimeoutMs, freePortPair());
    const portTaken = attempt.kind === "handshake-failed" && attempt.reason.code === "EADDRINUSE";
    if (!portTaken || tries >= PORT_ATTEMPTS_MAX) return attempt;
  }
}

interface Host {
  readonly worker: Worker;
  readonly job: BackupHostJob;
}

/** Worker hosts started and not yet terminated, in this process. */
let hostsRunning = 0;

/** How many backup Worker hosts (client, server, hash) run in this process right now. */
export function backupHostsRunning(): number {
  return hostsRunning;
}

function startWorker(url: URL): Worker {
  const worker = new Worker(url, { type: "module" });
  hostsRunning++;
  return worker;
}

const stopped = new WeakSet<Worker>();

/** Terminates a host (idempotent). */
function stopWorker(worker: Worker | undefined): void {
  if (worker === undefined || stopped.has(worker)) return;
  stopped.add(worker);
  worker.terminate();
  hostsRunning--;
}

function attemptOnce(
  options: JobWithExclusions,
  path: "storage" | "network",
  region: SharedArrayBuffer | null,
  ioTimeoutMs: number,
  wellKnownPort: number,
): Promise<Attempt> {
  const handshake = {
    wellKnownPort,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? 5_000,
  };
  const base = { mode: options.mode, path, handshake, region, ioTimeoutMs };
  const jobs: BackupHostJob[] = [
    {
      ...base,
      side: "client",
      client: {
        source: options.source,
        incremental: options.incremental,
        progressEveryMs: options.progressEveryMs ?? 250,
        excluded: options.excluded,
      },
    },
    {
      ...base,
      side: "server",
      server: {
        repo: options.repo,
        lockWaitMs: options.lockWaitMs ?? 30_000,
        pauseAt: options.pauseServerAt,
      },
    },
  ];
  return runHosts(options, jobs, region);
}

function runHosts(
  options: BackupJobOptions,
  jobs: BackupHostJob[],
  region: SharedArrayBuffer | null,
): Promise<Attempt> {
  return new Promise<Attempt>((resolve, reject) => {
    new HostRun(options, jobs, region, resolve, reject).start();
  });
}

type Side = "client" | "server";

/** A side's failure as its host reported it. */
interface SideError {
  readonly text: string;
  readonly origin: ErrorOrigin;
}

/**
 * The job's error from both sides' accounts, real cause first: a side's own failure (server
 * first when both have one) without the peer's echo of it; failing that, the cause a side
 * relayed from its peer; socket failures (often just the peer going away) only when nothing
 * else is known.
 *
 * @param errors each side's failure, if it reported one
 * @returns the message, each account prefixed with its side
 */
export function jobErrorMessage(errors: Partial<Record<Side, SideError>>): string {
  const sides = (["server", "client"] as const).filter((side) => errors[side] !== undefined);
  const own = sides.filter((side) => errors[side]!.origin === "own");
  if (own.length > 0) return own.map((side) => `${side}: ${errors[side]!.text}`).join("; ");
  const relayed = sides.find((side) => errors[side]!.origin === "peer");
  if (relayed !== undefined) {
    const peer = relayed === "server" ? "client" : "server";
    const text = errors[relayed]!.text;
    return `${peer}: ${text.replace(new RegExp(`^${peer} failed: `), "")}`;
  }
  return sides.map((side) => `${side}: ${errors[side]!.text}`).join("; ");
}

/**
 * One attempt's two hosts (and the hash worker): relays their messages, collects results and
 * errors, and ends the attempt exactly once: hosts terminated, the region's dead blocks
 * reclaimed, and, if the server host ended without reporting (crashed, or did not stop in time
 * after a cancel), its snapshot's leftovers removed from the repository.
 */
class HostRun {
  readonly #hosts: Host[];
  readonly #results: Partial<Record<Side, unknown>> = {};
  readonly #errors: Partial<Record<Side, SideError>> = {};
  #hashWorker: Worker | undefined;
  #settled = false;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #cancelReason: string | undefined;
  #cancelTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #onAbort = () => this.#cancel();

  constructor(
    readonly options: BackupJobOptions,
    jobs: BackupHostJob[],
    readonly region: SharedArrayBuffer | null,
    readonly resolve: (attempt: Attempt) => void,
    readonly reject: (error: Error) => void,
  ) {
    this.#hosts = jobs.map((job) => ({ worker: startWorker(WORKER), job }));
  }

  start(): void {
    this.options.signal?.addEventListener("abort", this.#onAbort);
    for (const host of this.#hosts) {
      host.worker.onerror = (event) => {
        event.preventDefault();
        this.#finish({
          error: new BackupJobError(`${host.job.side} host crashed: ${event.message}`),
        });
      };
      host.worker.onmessage = (event) => this.#onMessage(host, event.data);
      host.worker.postMessage(host.job);
    }
    if (this.options.signal?.aborted) this.#cancel();
  }

  #onMessage(host: Host, message: Record<string, unknown>): void {
    if ("ready" in message) {
      this.#hosts.find((h) => !listensFirst(h.job))?.worker.postMessage({ go: true });
    } else if ("progress" in message) this.#onProgress(host, message.progress as BackupProgress);
    else if ("paused" in message) this.options.onServerPaused?.(message.paused as WriterStep);
    else if ("wantHashWorker" in message && !this.#settled) this.#connectHashWorker(host);
    else if ("handshakeFailed" in message) {
      if (this.#cancelReason !== undefined) return this.#finishCancelled();
      const reason = message.handshakeFailed as FailureReason;
      this.#finish({ attempt: { kind: "handshake-failed", reason } });
    } else if ("error" in message) {
      this.#failed(host.job.side, {
        text: message.error as string,
        origin: (message.origin as ErrorOrigin | undefined) ?? "own",
      });
    } else if ("result" in message) {
      this.#results[host.job.side] = message.result;
      this.#maybeDone();
    }
  }

  #connectHashWorker(host: Host): void {
    // Started here: a Worker started inside the host takes about a second to come up.
    const hashWorker = this.#hashWorker ??= startWorker(HASH_WORKER);
    hashWorker.onerror = (event) => {
      event.preventDefault();
      this.#finish({ error: new BackupJobError(`hash worker crashed: ${event.message}`) });
    };
    const channel = new MessageChannel();
    hashWorker.postMessage({ port: channel.port1 }, [channel.port1]);
    host.worker.postMessage({ hashPort: channel.port2 }, [channel.port2]);
  }

  #onProgress(host: Host, progress: BackupProgress): void {
    if (host.job.side !== "client") return;
    this.options.onProgress?.(progress);
    const storageDrill = host.job.path === "storage"
      ? this.options.failStorageAfterBytes
      : undefined;
    const after = this.options.interruptClientAfterBytes ?? storageDrill;
    if (after !== undefined && progress.bytes >= after) {
      stopWorker(host.worker); // the server must notice on its own, within the region's timeouts
    }
  }

  #ended(side: Side): boolean {
    return this.#results[side] !== undefined || this.#errors[side] !== undefined;
  }

  #maybeDone(): void {
    const { client, server } = this.#results;
    if (client !== undefined && server !== undefined) {
      // Both committed: a cancel that came too late to stop the commit does not undo it.
      const attempt = { kind: "done", client, server } as Extract<Attempt, { kind: "done" }>;
      this.#finish({ attempt });
    } else if (this.#cancelReason !== undefined && this.#ended("client") && this.#ended("server")) {
      this.#finishCancelled();
    }
  }

  /** A side failed. It often takes its peer down too: wait a moment for the other's account. */
  #failed(side: Side, error: SideError): void {
    this.#errors[side] = error;
    if (this.#cancelReason !== undefined) return this.#maybeDone();
    if (this.#ended("client") && this.#ended("server")) this.#failWithBestReason();
    else this.#graceTimer ??= setTimeout(() => this.#failWithBestReason(), ERROR_GRACE_MS);
  }

  #failWithBestReason(): void {
    const transport = Object.values(this.#errors).every((error) => error.origin !== "own");
    this.#finish({ error: new BackupJobError(jobErrorMessage(this.#errors), transport) });
  }

  /** Asks both hosts to stop as a failure would; they are terminated if they do not in time. */
  #cancel(): void {
    if (this.#settled || this.#cancelReason !== undefined) return;
    const reason = this.options.signal?.reason;
    this.#cancelReason = reason instanceof Error ? reason.message : String(reason ?? "cancelled");
    for (const host of this.#hosts) host.worker.postMessage({ cancel: this.#cancelReason });
    this.#cancelTimer = setTimeout(() => this.#finishCancelled(), CANCEL_GRACE_MS);
  }

  #finishCancelled(): void {
    this.#finish({
      error: new BackupJobError(
        `backup cancelled: ${this.#cancelReason}; the snapshot was aborted and the repository ` +
          "left as it was",
      ),
    });
  }

  #finish(outcome: { attempt?: Attempt; error?: Error }): void {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#graceTimer);
    clearTimeout(this.#cancelTimer);
    for (const host of this.#hosts) stopWorker(host.worker);
    stopWorker(this.#hashWorker);
    this.options.signal?.removeEventListener("abort", this.#onAbort);
    // A server host that ended without reporting may have left its snapshot half-written.
    const serverVanished = !this.#ended("server") && outcome.attempt?.kind !== "handshake-failed";
    (async () => {
      if (this.region !== null) await reclaimDeadHosts(this.region);
      if (serverVanished) await removeLeftovers(this.options.repo).catch(() => {});
    })().then(() =>
      outcome.error === undefined ? this.resolve(outcome.attempt!) : this.reject(outcome.error)
    );
  }
}

/** After the hosts are gone, frees whatever a dead host left in the region (its lease ran out). */
async function reclaimDeadHosts(region: SharedArrayBuffer): Promise<void> {
  const janitor = (() => {
    try {
      return createStorageSockets({ region, waitMode: "async" });
    } catch {
      return undefined; // the region is not usable (a test passed a broken one): nothing to free
    }
  })();
  if (janitor === undefined) return;
  try {
    const deadlineMs = Date.now() + janitor.layout.leaseMs * 2 + 100;
    // Bounded: until nothing is left or the dead hosts' leases have certainly run out.
    while (janitor.reclaim() >= 0 && Date.now() < deadlineMs && blocksHeld(region) > 0) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await janitor.dispose();
  }
}

/** Control blocks held in the region by anyone (a janitor holds none). */
export function blocksHeld(region: SharedArrayBuffer): number {
  const usage = usageOfBuffer(region);
  if (!usage.ok) throw new Error(usage.message);
  return usage.value.blocks.length;
}
