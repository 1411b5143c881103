/**
 * The real work behind HTTP jobs: a backup runs as the CLI's does (two Worker hosts over
 * 127.0.0.1 and the server's storage region), a restore, a verify, a forget, a prune and a
 * consolidate as their CLIs do.
 *
 * Paths are resolved again when a job starts, not only when it was submitted: a parent directory
 * swapped for a symlink while the job waited must not lead it out of the roots. The work is
 * handed the resolved paths (canonical, symlinks resolved); a path that now resolves outside the
 * roots fails the job before anything is read or written.
 *
 * @module
 */

import { type BackupJobRequest, type JobExecutor, jobPathFields, type JobRequest } from "./jobs.ts";
import { type BackupJobOptions, type BackupJobSummary, runBackupJob } from "./backup_job.ts";
import { consolidateSnapshot } from "./consolidate.ts";
import { forgetSnapshots } from "./forget.ts";
import { pruneRepository } from "./prune.ts";
import { applyRetention, type RetentionReport } from "./retention.ts";
import { restoreSnapshot } from "./restore.ts";
import { verifyRepository } from "./verify.ts";
import { canonicalPath, isInsidePath, targetInsideSourceWarning } from "./paths.ts";
import { openRepository, resolveSnapshot } from "./repository.ts";

/** Where backups without a `source` read from (the sample tree). */
const SAMPLE_SOURCE = new URL("../../fixtures/sample", import.meta.url).pathname;

/** Drill options a backup job may get (tests hold a backup mid-flight). */
export type BackupDrill = Pick<BackupJobOptions, "pauseServerAt" | "onServerPaused">;

/** What the executor works with. */
export interface JobExecutorOptions {
  /** The region every backup job uses, or null for none. */
  readonly region: SharedArrayBuffer | null;
  /** Canonical directories jobs may touch; every path is checked again when its job starts. */
  readonly roots: readonly string[];
  /** Drill options for a backup job, by its request (tests only). */
  readonly drill?: (request: JobRequest & { kind: "backup" }) => BackupDrill | undefined;
}

/** A job's path no longer resolves inside the roots when the job starts. */
export class JobPathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "JobPathError";
  }
}

/**
 * Resolves every path of a request now (canonical, symlinks resolved) and checks it is inside
 * the roots.
 *
 * @param request the validated request
 * @param roots canonical directories
 * @returns the request with its paths resolved
 * @throws {JobPathError} naming the field, the path and where it leads now
 */
export async function resolveJobPaths<T extends JobRequest>(
  request: T,
  roots: readonly string[],
): Promise<T> {
  const resolved: Record<string, unknown> = { ...request };
  for (const [field, path] of jobPathFields(request)) {
    const real = await canonicalPath(path);
    if (!roots.some((root) => isInsidePath(real, root))) {
      throw new JobPathError(
        `${field} ${path} now resolves to ${real}, outside the roots; the job was refused ` +
          "when it started",
      );
    }
    resolved[field] = real;
  }
  return resolved as T;
}

/**
 * Builds the executor for a server that owns one storage region.
 *
 * @param options the region, the roots and drill options
 * @returns the executor for a `JobQueue`
 */
export function createJobExecutor(options: JobExecutorOptions): JobExecutor {
  return async (submitted, { signal, report }) => {
    const request = await resolveJobPaths(submitted, options.roots);
    switch (request.kind) {
      case "backup": {
        const mode = request.mode;
        const region = options.region;
        const summary = await runBackupJob({
          source: mode === "db" ? request.db ?? "" : request.source ?? SAMPLE_SOURCE,
          repo: request.repo,
          mode,
          incremental: request.incremental,
          channel: request.channel,
          ...(region === null ? { regionMib: 0 } : { region }),
          signal,
          ...options.drill?.(request),
          onProgress: (progress) =>
            report({
              files: progress.files,
              bytes: progress.bytes,
              storageBytes: 0,
              networkBytes: 0,
            }),
        });
        report({
          files: summary.files,
          bytes: summary.fileBytes,
          storageBytes: summary.storageBytes,
          networkBytes: summary.networkBytes,
        });
        if (request.keep === undefined) return summary;
        return { ...summary, retention: await retainAfter(summary, request, signal) };
      }
      case "restore": {
        const repo = await openRepository(request.repo);
        const manifest = await resolveSnapshot(repo, request.snapshot, request.source);
        const warning = await targetInsideSourceWarning(manifest.source, request.target);
        const summary = await restoreSnapshot({
          repo,
          snapshot: manifest.id,
          target: request.target,
          path: request.path,
          overwrite: request.overwrite,
          preservePermissions: request.preservePermissions,
        });
        return { ...summary, warnings: warning === undefined ? [] : [warning] };
      }
      case "verify": {
        const verified = await verifyRepository(request.repo, request.snapshot);
        if (!verified.ok) {
          const first = verified.problems[0];
          throw new Error(
            `verify found ${verified.problems.length} problem(s); first: ${first?.message}`,
          );
        }
        return verified;
      }
      case "forget": {
        const forget = await forgetSnapshots({
          repo: request.repo,
          rules: request.keep,
          timeZone: request.timeZone,
          source: request.source,
          dryRun: request.dryRun,
          signal,
        });
        if (!request.prune) return { forget };
        const prune = await pruneRepository({ repo: request.repo, dryRun: request.dryRun, signal });
        return { forget, prune };
      }
      case "prune":
        return await pruneRepository({
          repo: request.repo,
          dryRun: request.dryRun,
          maxUnusedPercent: request.maxUnusedPercent,
          signal,
        });
      case "consolidate":
        return await consolidateSnapshot({
          repo: request.repo,
          snapshot: request.snapshot,
          source: request.source,
          signal,
        });
    }
  };
}

/** A backup job's retention; a failure fails the job, naming the snapshot that was made. */
async function retainAfter(
  summary: BackupJobSummary,
  request: BackupJobRequest,
  signal: AbortSignal,
): Promise<RetentionReport> {
  try {
    return await applyRetention({
      repo: request.repo,
      rules: request.keep ?? {},
      timeZone: request.timeZone,
      source: summary.source,
      kind: summary.mode,
      signal,
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`snapshot ${summary.snapshot} was made, but retention failed: ${reason}`, {
      cause: error,
    });
  }
}
