/**
 * The STP suite against the file-backed region, once waiting with futex and once with the
 * polling fallback. Region files go in a fresh directory under /dev/shm; the last test checks
 * that every region a property made was closed and its file removed.
 */

import { registerSuite } from "./_deno.ts";
import { stpSuite } from "./stp_suite.ts";
import { fileRegions } from "../src/adapters/region_file.ts";
import { makeTempDirectory, removeDirectory } from "../src/adapters/_libc_files.ts";

const directory = makeTempDirectory("/dev/shm/lanfree-test-");

registerSuite(stpSuite(fileRegions(directory, { wakeMethod: "futex" })));
registerSuite(stpSuite(fileRegions(directory, { wakeMethod: "poll" })), { numRuns: 20 });

Deno.test("every file region the suites made was closed and its file removed", () => {
  removeDirectory(directory); // fails with ENOTEMPTY if a region file was left behind
});
