import { registerSuite } from "./_deno.ts";
import { restoreReliabilitySuite } from "./reliability_restore.ts";
import { denoRestoreCrashHarness } from "./reliability_restore_harness.ts";

registerSuite(restoreReliabilitySuite(denoRestoreCrashHarness));
