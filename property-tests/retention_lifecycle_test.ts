import { registerSuite } from "./_deno.ts";
import { denoLifecycleHarness } from "./retention_lifecycle_harness.ts";
import { retentionLifecycleSuite } from "./retention_lifecycle_suite.ts";

// A few sequences here (each one backs up, forgets, prunes, consolidates and restores on real
// files); more with `deno task conformance --suite "retention lifecycle" --runs N`.
registerSuite(retentionLifecycleSuite(denoLifecycleHarness), { numRuns: 6 });
