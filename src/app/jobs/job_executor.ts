/**
 * The real work behind HTTP jobs: a backup runs as the CLI's does (two Worker hosts over
 * 127.0.0.1 and the server's storage region), or, with `agent`, toward that agent (the server's
 * side in a Worker host, the client's on the agent); a restore reads the repository here, or
 * with `agent` streams it to the agent; a verify, a forget, a prune and a consolidate as their
 * CLIs do; a validation checks every path to an agent.
 *
 * Paths are resolved again when a job starts, not only when it was submitted: a parent directory
 * swapped for a symlink while the job waited must not lead it out of the roots. The work is
 * handed the resolved paths (canonical, symlinks resolved); a path that now resolves outside the
 * roots fails the job before anything is read or written.
 *
 * @module
 */

import {
  type BackupJobRequest,
  type JobExecutor,
  JobFailure,
  jobPathFields,
  type JobProgress,
  type JobRequest,
  type RestoreJobRequest,
} from "./jobs.ts";
import type { BackupProgress } from "../agent/backup_client.ts";
import { type AgentJobOptions, runAgentBackup, runAgentRestore } from "./agent_job.ts";
import { validateAgent } from "../server/validate.ts";
import { type BackupJobOptions, type BackupJobSummary, runBackupJob } from "./backup_job.ts";
import { consolidateSnapshot } from "../repository/consolidate.ts";
import { forgetSnapshots } from "../repository/forget.ts";
import { pruneRepository } from "../repository/prune.ts";
import { applyRetention, type RetentionReport } from "../repository/retention.ts";
import { restoreSnapshot } from "../repository/restore.ts";
import { verifyRepository } from "../repository/verify.ts";
import { canonicalPath, isInsidePath, targetInsideSourceWarning } from "../paths.ts";
import { openRepository, resolveSnapshot } from "../repository/repository.ts";

/** Where backups without a `source` read from (the sample tree). */
const SAMPLE_SOURCE = new URL("../../../fixtures/sample", import.meta.url).pathname;

/** Drill options a backup job may get (tests hold a backup mid-flight). */
export type BackupDrill = Pick<BackupJobOptions, "pauseServerAt" | "onServerPaused">;

/** What the executor works with. */
export interface JobExecutorOptions {
  /** The region every job uses: shared memory, a region file's path, or null for none. */
  readonly region: SharedArrayBuffer | string | null;
  /**
   * The agent key's bytes for jobs toward agents; null runs them without a key (insecure);
   * absent refuses them.
   */
  readonly agentKey?: Uint8Array | null;
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

/** The progress a job reports, from a side's progress and the bytes per channel so far. */
function progressOf(progress: BackupProgress): JobProgress {
  return {
    files: progress.files,
    bytes: progress.bytes,
    totalBytes: progress.totalBytes,
    storageBytes: progress.storageBytes ?? 0,
    networkBytes: progress.networkBytes ?? 0,
  };
}

/**
 * Builds the executor for a server that owns one storage region.
 *
 * @param options the region, the roots, the agent key and drill options
 * @returns the executor for a `JobQueue`
 */
export function createJobExecutor(options: JobExecutorOptions): JobExecutor {
  return async (submitted, { signal, report }) => {
    const request = await resolveJobPaths(submitted, options.roots);
    const onProgress = (progress: BackupProgress) => report(progressOf(progress));
    const agentOptions = () => {
      if (options.agentKey === undefined) {
        throw new Error(
          "this server has no agent key: set LANFREE_AGENT_KEY (or start it with --insecure-no-key)",
        );
      }
      return { region: options.region, key: options.agentKey, signal, onProgress };
    };
    switch (request.kind) {
      case "backup": {
        const summary = request.agent === undefined
          ? await runBackupJob({
            ...request,
            source: request.mode === "fs" ? request.source ?? SAMPLE_SOURCE : undefined,
            ...(options.region === null ? { regionMib: 0 } : { region: options.region }),
            signal,
            ...options.drill?.(request),
            onProgress,
          })
          : await runAgentBackup({ ...request, agent: request.agent }, {
            ...agentOptions(),
            ...options.drill?.(request),
          });
        // In the running reports' unit, archive bytes (headers included): a count of the
        // files' bytes alone would go back at the end.
        report({
          files: summary.files,
          bytes: summary.archiveBytes,
          totalBytes: summary.archiveBytes,
          storageBytes: summary.storageBytes,
          networkBytes: summary.networkBytes,
        });
        if (request.keep === undefined) return summary;
        return { ...summary, retention: await retainAfter(summary, request, signal) };
      }
      case "restore":
        return request.agent === undefined
          ? await restoreHere(request, report)
          : await restoreOnAgent({ ...request, agent: request.agent }, agentOptions(), report);
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
      case "validate": {
        const validated = await validateAgent(request.agent, agentOptions());
        if (!validated.ok) {
          const broken = validated.paths.filter((path) => !path.works)
            .map((path) => `${path.path}: ${path.reason}`);
          throw new JobFailure(`not every path works (${broken.join("; ")})`, validated);
        }
        return validated;
      }
      case "forget":
      case "prune":
      case "consolidate":
        return await maintain(request, signal);
    }
  };
}

/** A forget (and prune after it when asked), a prune or a consolidate, as their CLIs do. */
async function maintain(
  request: JobRequest & { kind: "forget" | "prune" | "consolidate" },
  signal: AbortSignal,
) {
  switch (request.kind) {
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

/** A restore from a repository of this server into a directory of this server. */
/** What a restore wrote, as the job's last progress (a local one moves nothing per channel). */
function reportRestored(
  report: (progress: JobProgress) => void,
  written: { files: number; bytes: number; storageBytes?: number; networkBytes?: number },
): void {
  report({
    files: written.files,
    bytes: written.bytes,
    totalBytes: written.bytes,
    storageBytes: written.storageBytes ?? 0,
    networkBytes: written.networkBytes ?? 0,
  });
}

async function restoreHere(request: RestoreJobRequest, report: (progress: JobProgress) => void) {
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
  reportRestored(report, summary);
  return { ...summary, warnings: warning === undefined ? [] : [warning] };
}

/** A restore into a directory of an agent; some entries not restored fail it, summary kept. */
async function restoreOnAgent(
  request: RestoreJobRequest & { readonly agent: string },
  options: AgentJobOptions,
  report: (progress: JobProgress) => void,
) {
  const summary = await runAgentRestore(request, options);
  reportRestored(report, summary);
  if (!summary.ok) {
    const first = summary.problems.slice(0, 3).map((p) => p.message).join("; ");
    throw new JobFailure(
      `${summary.problems.length} of the snapshot's entries could not be restored on the agent ` +
        `(the rest was): ${first}`,
      summary,
    );
  }
  return summary;
}
