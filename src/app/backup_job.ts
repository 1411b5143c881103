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
import type { Manifest } from "../core/backup/manifest.ts";
import { createStorageSockets } from "../adapters/shm.ts";
import { type BackupHostJob, listensFirst } from "./backup_host_worker.ts";
import type { BackupClientResult, BackupProgress } from "./backup_client.ts";
import type { BackupServerResult } from "./backup_server.ts";
import { freePortPair } from "./ports.ts";

const WORKER = new URL("./backup_host_worker.ts", import.meta.url);
const HASH_WORKER = new URL("./_hash_worker.ts", import.meta.url);
const PORT_ATTEMPTS_MAX = 5;
/** How long a failed client's job waits for the server's account of the failure. */
const ERROR_GRACE_MS = 2_000;

/** Options of {@link runBackupJob}: the CLI's, validated. */
export interface BackupJobOptions {
  readonly source: string;
  readonly repo: string;
  readonly mode: "fs" | "db";
  readonly incremental: boolean;
  /** `auto`: storage, else the network with the reason; `storage`: storage or fail; `network`. */
  readonly channel: "storage" | "network" | "auto";
  /** Size of the storage region in MiB; 0 attaches none. Default 64. */
  readonly regionMib?: number;
  /** Control blocks in the region. Default 64. */
  readonly controlBlocks?: number;
  /** A region to use instead of a fresh one (tests inspect it afterwards). */
  readonly region?: SharedArrayBuffer;
  readonly lockWaitMs?: number;
  readonly ioTimeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
  readonly onProgress?: (progress: BackupProgress) => void;
  readonly signal?: AbortSignal;
  /** Drill: terminate the client host once it reported at least this many bytes. */
  readonly interruptClientAfterBytes?: number;
  /** How often the client reports progress, ms (default 250). */
  readonly progressEveryMs?: number;
}

/** What a backup job did. */
export interface BackupJobSummary {
  readonly snapshot: string;
  readonly parent: string | null;
  readonly source: string;
  readonly mode: "fs" | "db";
  readonly dataPath: "storage" | "network";
  readonly fallbackReason: string | null;
  readonly files: number;
  readonly filesTotal: number;
  readonly fileBytes: number;
  readonly archiveBytes: number;
  readonly storageBytes: number;
  readonly networkBytes: number;
  readonly skipped: ReadonlyArray<{ readonly path: string; readonly reason: string }>;
  readonly seconds: number;
  readonly megabytesPerSecond: number;
}

/** A backup that did not happen, with the reason in words. */
export class BackupJobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackupJobError";
  }
}

/** The region geometry for a job: 8 MiB extents (one ring each), as the benchmarks size them. */
export function jobRegionConfig(
  regionMib: number,
  controlBlocks: number,
  ioTimeoutMs: number,
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
    leaseMs: 2000,
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
export async function runBackupJob(options: BackupJobOptions): Promise<BackupJobSummary> {
  const startedMs = performance.now();
  const ioTimeoutMs = options.ioTimeoutMs ?? 30_000;
  const regionMib = options.regionMib ?? 64;
  let region: SharedArrayBuffer | null = options.region ?? null;
  let fallbackReason: string | null = null;
  if (region === null && regionMib > 0 && options.channel !== "network") {
    const formatted = formatRegion(
      jobRegionConfig(regionMib, options.controlBlocks ?? 64, ioTimeoutMs),
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
  let attempt = path === "storage"
    ? await attemptWithPorts(options, path, region, ioTimeoutMs)
    : undefined;
  if (attempt?.kind === "handshake-failed") {
    fallbackReason = `the storage path could not be set up: ${describe(attempt.reason)}`;
    path = "network";
    attempt = undefined;
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

function describe(reason: FailureReason): string {
  return `${reason.code} at step ${reason.step} (${reason.origin}): ${reason.message}`;
}

function summarize(
  options: BackupJobOptions,
  attempt: Extract<Attempt, { kind: "done" }>,
  dataPath: "storage" | "network",
  fallbackReason: string | null,
  startedMs: number,
): BackupJobSummary {
  const manifest: Manifest = attempt.server.manifest;
  const seconds = (performance.now() - startedMs) / 1000;
  return {
    snapshot: manifest.id,
    parent: manifest.parent,
    source: manifest.source,
    mode: options.mode,
    dataPath,
    fallbackReason,
    files: attempt.client.files,
    filesTotal: manifest.entries.filter((entry) => entry.type === "file").length,
    fileBytes: attempt.client.fileBytes,
    archiveBytes: manifest.archiveBytes,
    storageBytes: manifest.channelBytes.storage,
    networkBytes: manifest.channelBytes.network,
    skipped: attempt.client.skipped,
    seconds,
    megabytesPerSecond: attempt.client.fileBytes / 1e6 / Math.max(seconds, 1e-6),
  };
}

async function attemptWithPorts(
  options: BackupJobOptions,
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

function attemptOnce(
  options: BackupJobOptions,
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
      },
    },
    {
      ...base,
      side: "server",
      server: { repo: options.repo, lockWaitMs: options.lockWaitMs ?? 30_000 },
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
    const hosts: Host[] = jobs.map((job) => ({
      worker: new Worker(WORKER, { type: "module" }),
      job,
    }));
    const results: Partial<Record<"client" | "server", unknown>> = {};
    let hashWorker: Worker | undefined;
    let settled = false;
    const finish = (outcome: { attempt?: Attempt; error?: Error }) => {
      if (settled) return;
      settled = true;
      clearTimeout(graceTimer);
      for (const host of hosts) host.worker.terminate();
      hashWorker?.terminate();
      options.signal?.removeEventListener("abort", onAbort);
      const after = region === null ? Promise.resolve() : reclaimDeadHosts(region);
      after.then(() =>
        outcome.error === undefined ? resolve(outcome.attempt!) : reject(outcome.error)
      );
    };
    const onAbort = () => finish({ error: new BackupJobError("backup cancelled") });
    // A side that fails often takes its peer down with it; the server's account says why (it
    // includes the client's own report), so give it a moment to arrive before answering.
    const errors: Partial<Record<"client" | "server", string>> = {};
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const failWithBestReason = () => {
      clearTimeout(graceTimer);
      const reasons = (["server", "client"] as const).filter((side) => errors[side] !== undefined)
        .map((side) => `${side}: ${errors[side]}`);
      finish({ error: new BackupJobError(reasons.join("; ")) });
    };
    const failed = (side: "client" | "server", error: string) => {
      errors[side] = error;
      if (errors.server !== undefined && errors.client !== undefined) failWithBestReason();
      else graceTimer ??= setTimeout(failWithBestReason, ERROR_GRACE_MS);
    };
    options.signal?.addEventListener("abort", onAbort);
    if (options.signal?.aborted) return onAbort();
    for (const host of hosts) {
      host.worker.onerror = (event) => {
        event.preventDefault();
        finish({ error: new BackupJobError(`${host.job.side} host crashed: ${event.message}`) });
      };
      host.worker.onmessage = (event) => {
        const message = event.data;
        if ("ready" in message) {
          hosts.find((h) => !listensFirst(h.job))?.worker.postMessage({ go: true });
        } else if ("progress" in message) onProgress(host, message.progress);
        else if ("wantHashWorker" in message && !settled) {
          // Started here: a Worker started inside the host takes about a second to come up.
          hashWorker ??= new Worker(HASH_WORKER, { type: "module" });
          hashWorker.onerror = (event) => {
            event.preventDefault();
            finish({ error: new BackupJobError(`hash worker crashed: ${event.message}`) });
          };
          const channel = new MessageChannel();
          hashWorker.postMessage({ port: channel.port1 }, [channel.port1]);
          host.worker.postMessage({ hashPort: channel.port2 }, [channel.port2]);
        } else if ("handshakeFailed" in message) {
          finish({ attempt: { kind: "handshake-failed", reason: message.handshakeFailed } });
        } else if ("error" in message) {
          failed(host.job.side, message.error);
        } else if ("result" in message) {
          results[host.job.side] = message.result;
          if (results.client !== undefined && results.server !== undefined) {
            finish({
              attempt: {
                kind: "done",
                client: results.client as BackupClientResult,
                server: results.server as BackupServerResult,
              },
            });
          }
        }
      };
      host.worker.postMessage(host.job);
    }
    const onProgress = (host: Host, progress: BackupProgress) => {
      if (host.job.side !== "client") return;
      options.onProgress?.(progress);
      if (
        options.interruptClientAfterBytes !== undefined &&
        progress.bytes >= options.interruptClientAfterBytes
      ) {
        host.worker.terminate(); // the server must notice on its own, within the region's timeouts
      }
    };
  });
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
