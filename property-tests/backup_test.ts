import { registerSuite } from "./_deno.ts";
import { denoBackupHarness } from "./backup_harness.ts";
import { backupSuite } from "./backup_suite.ts";
import { runBackupJob } from "../src/app/jobs/backup_job.ts";

// The repository side alone (fast, many runs).
registerSuite(backupSuite(denoBackupHarness));

// The whole product path: client and server Worker hosts, handshakes, data through storage.
const endToEnd = backupSuite({
  ...denoBackupHarness,
  backup: (source, repo, incremental) =>
    runBackupJob({ source, repo, mode: "fs", incremental, channel: "storage" }),
});
registerSuite({ ...endToEnd, name: "backup (end to end through storage)" }, { numRuns: 6 });
