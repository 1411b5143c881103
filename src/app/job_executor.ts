/**
 * The real work behind HTTP jobs: a backup runs as the CLI's does (two Worker hosts over
 * 127.0.0.1 and the server's storage region), a restore and a verify as their CLIs do.
 *
 * @module
 */

import type { JobExecutor } from "./jobs.ts";
import { type BackupJobOptions, runBackupJob } from "./backup_job.ts";
import { restoreSnapshot } from "./restore.ts";
import { verifyRepository } from "./verify.ts";

/** Where backups without a `source` read from (the sample tree). */
const SAMPLE_SOURCE = new URL("../../fixtures/sample", import.meta.url).pathname;

/** Drill options every backup job of an executor gets (tests hold a backup mid-flight). */
export type BackupDrill = Pick<BackupJobOptions, "pauseServerAt" | "onServerPaused">;

/**
 * Builds the executor for a server that owns one storage region.
 *
 * @param region the region every backup job uses, or null for none
 * @param drill drill options for every backup job (tests only)
 * @returns the executor for a `JobQueue`
 */
export function createJobExecutor(
  region: SharedArrayBuffer | null,
  drill: BackupDrill = {},
): JobExecutor {
  return async (request, { signal, report }) => {
    switch (request.kind) {
      case "backup": {
        const mode = request.mode;
        return await runBackupJob({
          source: mode === "db" ? request.db ?? "" : request.source ?? SAMPLE_SOURCE,
          repo: request.repo,
          mode,
          incremental: request.incremental,
          channel: request.channel,
          ...(region === null ? { regionMib: 0 } : { region }),
          signal,
          ...drill,
          onProgress: (progress) =>
            report({
              files: progress.files,
              bytes: progress.bytes,
              storageBytes: 0,
              networkBytes: 0,
            }),
        }).then((summary) => {
          report({
            files: summary.files,
            bytes: summary.fileBytes,
            storageBytes: summary.storageBytes,
            networkBytes: summary.networkBytes,
          });
          return summary;
        });
      }
      case "restore":
        return await restoreSnapshot({
          repo: request.repo,
          snapshot: request.snapshot,
          target: request.target,
          path: request.path,
          overwrite: request.overwrite,
        });
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
    }
  };
}
