import { registerSuite } from "./_deno.ts";
import { denoBackupHarness } from "./backup_harness.ts";
import { backupSuite, REFUSALS } from "./backup_suite.ts";
import { runBackupJob } from "../src/app/jobs/backup_job.ts";

// The repository side alone (fast, many runs).
registerSuite(backupSuite(denoBackupHarness));

// The whole product path: client and server Worker hosts, handshakes, data through storage.
const endToEnd = backupSuite({
  ...denoBackupHarness,
  backup: (source, repo, incremental) =>
    runBackupJob({ source, repo, mode: "fs", incremental, channel: "storage" }),
});
// Refusals are restore's and verify's business, the same on both paths: not run again here.
const productPath = endToEnd.properties.filter((p) =>
  !(REFUSALS as readonly string[]).includes(p.name)
);
registerSuite(
  { name: "backup (end to end through storage)", properties: productPath },
  { numRuns: 6 },
);
