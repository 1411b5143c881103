/**
 * The platform-neutral surface, bundled by `deno task bundle` into `dist/lanfree.mjs` for edge
 * and serverless runtimes: the pure cores, the conformance suites and their runner, and the
 * HTTP control app. Nothing here touches Deno, the file system or sockets.
 *
 * @module
 */

export * from "./core/dispatch/errors.ts";
export * from "./core/dispatch/descriptor.ts";
export * from "./core/dispatch/sockets.ts";
export * from "./core/dispatch/socket_state.ts";
export * from "./core/dispatch/socket_table.ts";
export * from "./core/dispatch/router.ts";
export * from "./core/wire/frame.ts";
export * from "./core/wire/messages.ts";
export * from "./core/handshake/mod.ts";
export * from "./app/jobs.ts";
export * from "./adapters/http.ts";
export * from "../property-tests/_suite.ts";
export * from "../property-tests/_runner.ts";
export * from "../property-tests/dispatch_suite.ts";
export * from "../property-tests/wire_suite.ts";
export * from "../property-tests/stp_suite.ts";
export { sharedArrayBufferRegions } from "./adapters/shm_region.ts";
export { attachRegion, formatRegion } from "./core/stp/region.ts";
export { planRegion } from "./core/stp/layout.ts";
export * from "../property-tests/handshake_suite.ts";
