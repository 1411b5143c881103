/**
 * lanfree's own implementations bound to every conformance suite whose implementation runs on
 * any JavaScript runtime (Deno, Node, workerd): no sockets, no files, no Deno APIs. The edge
 * bundle runs these; `deno task conformance` runs them and the two that need Deno (the sockets
 * model over TCP and the backup suite over the file system).
 *
 * @module
 */

import type { Suite } from "./_suite.ts";
import { descriptorSuite } from "./dispatch_suite.ts";
import { handshakeSuite } from "./handshake_suite.ts";
import { stpSuite } from "./stp_suite.ts";
import { wireSuite } from "./wire_suite.ts";
import { sharedArrayBufferRegions } from "../src/adapters/shm_region.ts";
import { createHandshake } from "../src/core/handshake/mod.ts";
import { decodeMessage, encodeMessage } from "../src/core/wire/messages.ts";

/**
 * The platform-neutral suites, each bound to lanfree's own implementation: the descriptor rule
 * and router, the STP region over SharedArrayBuffers, the control-message codec and the
 * handshake machines.
 *
 * @returns fresh suites, in that order
 *
 * @example Running them all a few times
 * ```ts
 * import assert from "node:assert/strict";
 * import { edgeSuites } from "./edge_suites.ts";
 * import { runSuites } from "./_runner.ts";
 * const results = await runSuites(edgeSuites(), { runs: 3, seed: 7 });
 * assert.ok(results.every((result) => result.passed));
 * ```
 */
export function edgeSuites(): Suite[] {
  return [
    descriptorSuite(),
    stpSuite(sharedArrayBufferRegions),
    wireSuite({ encode: encodeMessage, decode: decodeMessage }),
    handshakeSuite(createHandshake),
  ];
}
