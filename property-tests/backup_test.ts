import { registerSuite } from "./_deno.ts";
import { denoBackupHarness } from "./backup_harness.ts";
import { backupSuite } from "./backup_suite.ts";

registerSuite(backupSuite(denoBackupHarness));
