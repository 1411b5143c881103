/**
 * `deno task conformance`'s command line over {@link trippingSuite} alone: what its test runs in
 * a real process, where an error escaping a property would otherwise end the process.
 *
 * @module
 */

import { conformanceMain } from "./conformance.ts";
import { trippingSuite } from "../property-tests/_tripping_suite.ts";

if (import.meta.main) {
  try {
    Deno.exit(await conformanceMain(Deno.args, () => [trippingSuite()]));
  } catch (error) {
    console.error(`conformance: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(2);
  }
}
