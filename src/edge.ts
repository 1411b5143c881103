/**
 * The platform-neutral surface: everything of lanfree that runs on any JavaScript runtime
 * (Deno, Node, Cloudflare's workerd, a browser worker) because it touches no file, no socket and
 * no Deno API. `deno task bundle` builds exactly this into `dist/lanfree.mjs` (with its type
 * declarations in `dist/lanfree.d.mts`); `mod.ts` exports all of it too.
 *
 * - the conformance suites, their runner and the interfaces they take (as `./conformance`);
 * - the dispatch core: descriptor spaces and the descriptor rule, the unified `Sockets`
 *   interface, the router, typed socket errors;
 * - control frames and the handshake messages' codec;
 * - the handshake machines (file-system and database flows) and their configuration;
 * - the storage region: planning, formatting and attaching, occupancy, the SharedArrayBuffer
 *   region factory and a single-threaded {@link plainMemory};
 * - the snapshot manifest's validation;
 * - the HTTP control app and the job queue behind it, with services supplied by the host.
 *
 * @example Lanfree's own platform-neutral suites and the control app in one fetch handler
 * ```ts
 * import assert from "node:assert/strict";
 * import {
 *   createControlApp,
 *   edgeSuites,
 *   JobQueue,
 *   jobsPort,
 *   runSuites,
 *   suitesPort,
 * } from "./edge.ts";
 *
 * const app = createControlApp({
 *   token: "secret",
 *   roots: [],
 *   resolvePath: (path) => Promise.reject(new Error(`no file system here: ${path}`)),
 *   jobs: jobsPort(new JobQueue(() => Promise.reject(new Error("no jobs")), () => Date.now())),
 *   listSnapshots: () => Promise.resolve([]),
 *   storageOccupancy: () => undefined,
 *   suites: suitesPort(edgeSuites),
 * });
 * const handler = async (request: Request): Promise<Response> =>
 *   new URL(request.url).pathname === "/run"
 *     ? Response.json(await runSuites(edgeSuites(), { runs: 2, seed: 1 }))
 *     : await app.fetch(request);
 *
 * assert.equal((await handler(new Request("http://edge/health"))).status, 200);
 * assert.equal((await handler(new Request("http://edge/v1/jobs"))).status, 401);
 * const run = await (await handler(new Request("http://edge/run"))).json();
 * assert.ok(run.every((result: { passed: boolean }) => result.passed));
 * ```
 *
 * @module
 */

export * from "../conformance.ts";
export { edgeSuites } from "../property-tests/edge_suites.ts";

// Dispatch core.
export {
  fail,
  ok,
  SocketError,
  type SocketErrorDetails,
  toSocketError,
  unwrap,
} from "./core/dispatch/errors.ts";
export {
  DESCRIPTOR_RANGES,
  type DescriptorRange,
  DescriptorSpace,
  kindOfDescriptor,
  NETWORK_FD_MAX,
  NETWORK_FD_MIN,
  STORAGE_FD_MAX,
  STORAGE_FD_MIN,
} from "./core/dispatch/descriptor.ts";
export { checkAddress, formatAddress, PORT_MAX } from "./core/dispatch/sockets.ts";
export { createRouter, type SocketsByKind, unavailableSockets } from "./core/dispatch/router.ts";

// Control frames and messages.
export {
  decodeFrameHeader,
  encodeFrame,
  FRAME_BYTES_LIMIT,
  FRAME_BYTES_MAX_DEFAULT,
  FRAME_HEADER_BYTES,
  readFrame,
  recvExactly,
  writeFrame,
} from "./core/wire/frame.ts";
export {
  decodeMessage,
  DESCRIPTOR_VALUE_MAX,
  encodeMessage,
  ERROR_TEXT_BYTES_MAX,
  errorMessage,
  MESSAGE_BYTES_MAX,
  WELL_KNOWN_BYTES,
  WELL_KNOWN_BYTES_MAX,
  wellKnownString,
} from "./core/wire/messages.ts";

// Handshake machines.
export { createHandshake } from "./core/handshake/mod.ts";
export { createNetworkOnlyHandshake } from "./core/handshake/network_only.ts";
export {
  FS_NETWORK_CONNECTIONS,
  HANDSHAKE_BACKLOG_MAX,
  HANDSHAKE_TIMEOUT_MS_MAX,
  type HandshakeConfigInput,
  parseHandshakeConfig,
  parseServerConfig,
} from "./core/handshake/config.ts";

// Storage region.
export { attachRegion, formatInto, formatRegion } from "./core/stp/region.ts";
export { LIMITS, planRegion, REGION_BYTES_MAX } from "./core/stp/layout.ts";
export { plainMemory } from "./core/stp/memory.ts";
export { type RegionUsage, regionUsage, usageOfBuffer } from "./core/stp/usage.ts";
export { sharedArrayBufferRegions } from "./adapters/shm_region.ts";

// Snapshot manifests.
export {
  type ChannelBytes,
  type DirEntry,
  type EntryCommon,
  type FileEntry,
  type Manifest,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type ManifestEntry,
  type ManifestParse,
  parseManifest,
  SNAPSHOT_ID_PATTERN,
  type SymlinkEntry,
} from "./core/backup/manifest.ts";

// Retention policy (restic's keep rules).
export {
  applyKeepRules,
  hasKeepRule,
  type KeepDuration,
  keepRulesProblem,
  parseKeepDuration,
} from "./core/backup/retention.ts";

// HTTP control app and job queue.
export {
  type ControlApp,
  type ControlServices,
  createControlApp,
  type JobEventView,
  type JobsPort,
  type JobTotals,
  type Parsed,
  type StorageOccupancy,
  type SuitesPort,
} from "./adapters/http.ts";
export { suitesPort } from "../property-tests/_runner.ts";
export {
  type BackupJobRequest,
  type ConsolidateJobRequest,
  type FlowOptions,
  type ForgetJobRequest,
  type JobEvent,
  type JobExecutor,
  JobFailure,
  type JobProgress,
  JobQueue,
  JobQueueFullError,
  type JobQueueLimits,
  type JobRecord,
  type JobRequest,
  jobsPort,
  type JobState,
  type PruneJobRequest,
  type RestoreJobRequest,
  type ValidateJobRequest,
  type VerifyJobRequest,
} from "./app/jobs/jobs.ts";
