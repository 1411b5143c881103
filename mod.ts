/**
 * lanfree: backups that move bulk data through a shared storage system while control and
 * error traffic stays on the network.
 *
 * This module is the library surface: the unified socket API and its dispatch layer, the
 * network (TCP) implementation, control-channel framing, and the conformance suites that check
 * any implementation against lanfree's rules.
 *
 * @example Two network sockets through the dispatch layer
 * ```ts
 * import { createRouter, createTcpSockets, readFrame, unavailableSockets, writeFrame } from "./mod.ts";
 *
 * const sockets = createRouter({
 *   network: createTcpSockets({ ioTimeoutMs: 5000 }),
 *   storage: unavailableSockets("storage", "no region attached in this example"),
 * });
 * const listener = await sockets.socket("network");
 * await sockets.bind(listener, { kind: "network", host: "127.0.0.1", port: 0 });
 * await sockets.listen(listener, 1);
 * const client = await sockets.socket("network");
 * const [server] = await Promise.all([
 *   sockets.accept(listener),
 *   sockets.connect(client, await sockets.getsockname(listener)),
 * ]);
 * await writeFrame(sockets, client, new TextEncoder().encode("hello"));
 * const frame = await readFrame(sockets, server);
 * console.assert(new TextDecoder().decode(frame!) === "hello");
 * for (const fd of [client, server, listener]) await sockets.close(fd);
 * ```
 *
 * @example Running the STP conformance suite against your own region implementation
 * ```ts
 * import { runSuites, sharedArrayBufferRegions, stpSuite, type RegionFactory } from "./mod.ts";
 *
 * // A user-supplied factory: here it delegates to lanfree's SharedArrayBuffer regions; yours
 * // would format and attach your own (a file on shared media, say).
 * const myRegions: RegionFactory = {
 *   name: "my-regions",
 *   create: (config) => sharedArrayBufferRegions.create(config),
 *   attach: (bytes) => sharedArrayBufferRegions.attach(bytes),
 * };
 * const results = await runSuites([stpSuite(myRegions)], { runs: 5, seed: 1 });
 * for (const result of results) console.assert(result.passed, result.report);
 * ```
 *
 * @module
 */

export * from "./src/core/dispatch/errors.ts";
export * from "./src/core/dispatch/descriptor.ts";
export * from "./src/core/dispatch/sockets.ts";
export * from "./src/core/dispatch/socket_state.ts";
export * from "./src/core/dispatch/socket_table.ts";
export * from "./src/core/dispatch/router.ts";
export * from "./src/core/wire/frame.ts";
export * from "./src/core/wire/messages.ts";
export * from "./src/core/handshake/mod.ts";
export * from "./src/adapters/tcp.ts";
export {
  createStorageSockets,
  type StorageSockets,
  type StorageSocketsOptions,
} from "./src/adapters/shm.ts";
export { sharedArrayBufferRegions } from "./src/adapters/shm_region.ts";
export {
  attachRegion,
  formatRegion,
  type Region,
  type RegionFactory,
} from "./src/core/stp/region.ts";
export { planRegion, type RegionConfig, type RegionLayout } from "./src/core/stp/layout.ts";
export { type RegionUsage, regionUsage } from "./src/core/stp/usage.ts";
export {
  driveHandshake,
  type HandshakeOutcome,
  readyToAccept,
} from "./src/app/handshake_driver.ts";
export {
  BackupJobError,
  type BackupJobOptions,
  type BackupJobSummary,
  runBackupJob,
} from "./src/app/backup_job.ts";
export { type LocalBackupOptions, runLocalBackup } from "./src/app/local_backup.ts";
export { type RestoreOptions, restoreSnapshot, type RestoreSummary } from "./src/app/restore.ts";
export { type VerifyReport, verifyRepository } from "./src/app/verify.ts";
export {
  initRepository,
  latestSnapshot,
  listSnapshots,
  openRepository,
  readManifest,
  type Repository,
} from "./src/app/repository.ts";
export { type Manifest, manifestSchema } from "./src/core/backup/manifest.ts";
export { Session, type SessionChannels } from "./src/app/session.ts";
export { createNetworkOnlyHandshake } from "./src/core/handshake/network_only.ts";
export {
  type ControlServices,
  createControlApp,
  type StorageOccupancy,
} from "./src/adapters/http.ts";
export { type JobExecutor, JobQueue, type JobRequest } from "./src/app/jobs.ts";
export * from "./property-tests/_suite.ts";
export * from "./property-tests/_runner.ts";
export * from "./property-tests/dispatch_suite.ts";
export * from "./property-tests/wire_suite.ts";
export * from "./property-tests/stp_suite.ts";
export * from "./property-tests/handshake_suite.ts";
export {
  createRegionFile,
  DEFAULT_REGION_DIRECTORY,
  fileRegions,
  openRegionFile,
  type RegionFile,
  RegionFileError,
  type RegionFileOptions,
  type RegionFileProblem,
  removeRegionFile,
} from "./src/adapters/region_file.ts";
export { futexAvailable, type WakeMethod } from "./src/adapters/futex.ts";
export { sharedRegion } from "./src/adapters/shm_region.ts";
export type { WaitMode } from "./src/adapters/shm_memory.ts";
export type { ZeroCopySockets } from "./src/adapters/shm_zero_copy.ts";
export type { WaitResult } from "./src/core/stp/region.ts";
export type { RegionMemory } from "./src/core/stp/memory.ts";
export type { StgLayout } from "./src/core/stp/layout.ts";
export { type HostSlot, hostSlots } from "./src/core/stp/hosts.ts";
export { pickStg, RINGS_PER_CONNECTION } from "./src/core/stp/stg_pick.ts";
export {
  type BlockReport,
  type RegionReport,
  regionReport,
  type StgReport,
} from "./src/core/stp/report.ts";
export { checkStgInfo, type StgInfoMismatch } from "./src/core/handshake/stg_info.ts";
