import { registerSuite } from "./_deno.ts";
import { denoReliabilityHarness } from "./reliability_harness.ts";
import { reliabilitySuite } from "./reliability_suite.ts";

// A few runs here (each starts and kills a real process); more with
// `deno task conformance --suite reliability --runs N`.
registerSuite(reliabilitySuite(denoReliabilityHarness), { numRuns: 4 });
