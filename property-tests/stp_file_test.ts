/**
 * The STP suite against the file-backed region, once waiting with futex and once with the
 * polling fallback. Region files go in a fresh directory under /dev/shm; the last test checks
 * that every region a property made was closed and its file removed.
 */

import assert from "node:assert/strict";
import { registerSuite } from "./_deno.ts";
import { stpSuite } from "./stp_suite.ts";
import { fileRegions } from "../src/adapters/region_file.ts";

const directory = Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "lanfree-test-" });

registerSuite(stpSuite(fileRegions(directory, { wakeMethod: "futex" })));
registerSuite(stpSuite(fileRegions(directory, { wakeMethod: "poll" })), { numRuns: 20 });

Deno.test("every file region the suites made was closed and its file removed", () => {
  const left = [...Deno.readDirSync(directory)].map((entry) => entry.name);
  Deno.removeSync(directory, { recursive: true });
  assert.deepEqual(left, []);
});
