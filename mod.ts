/**
 * lanfree: backups that move bulk data through a shared storage system while control and
 * error traffic stays on the network.
 *
 * This module is the library surface for Deno. It holds everything of `./edge` (the
 * platform-neutral part: the conformance suites and the interfaces they take, the dispatch,
 * wire, handshake and storage-region cores, manifest validation, the HTTP control app and its
 * job queue) and adds what needs Deno:
 *
 * - the network sockets over Deno TCP ({@link createTcpSockets}) and the storage sockets over a
 *   SharedArrayBuffer region ({@link createStorageSockets});
 * - the handshake driver over real sockets ({@link driveHandshake});
 * - the backup product without its CLI: {@link runBackupJob} (client and server in Worker hosts,
 *   data through storage or the network), {@link runLocalBackup} (in one process),
 *   {@link restoreSnapshot}, {@link verifyRepository} and the repository functions.
 *
 * Internals (state tables, descriptor tables, the handshake's rows) are in `./internal`, with
 * no promise that they stay as they are. Using lanfree from another project takes a few lines of
 * `deno.json`: see the README's "Using it as a library".
 *
 * @example Two network sockets through the dispatch layer
 * ```ts
 * import assert from "node:assert/strict";
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
 * assert.equal(new TextDecoder().decode(frame!), "hello");
 * for (const fd of [client, server, listener]) await sockets.close(fd);
 * ```
 *
 * @example Running the STP conformance suite against your own region implementation
 * ```ts
 * import assert from "node:assert/strict";
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
 * for (const result of results) assert.ok(result.passed, result.report ?? result.property);
 * ```
 *
 * @module
 */

export * from "./src/edge.ts";

// Sockets over Deno.
export { createTcpSockets, type TcpSocketsOptions } from "./src/adapters/tcp.ts";
export {
  createStorageSockets,
  type StorageSockets,
  type StorageSocketsOptions,
} from "./src/adapters/shm.ts";
export type { WaitMode } from "./src/adapters/shm_memory.ts";
export {
  driveHandshake,
  type DriveOptions,
  type HandshakeOutcome,
  readyToAccept,
} from "./src/app/hosts/handshake_driver.ts";

// The backup product, without its CLI.
export {
  BackupJobError,
  type BackupJobOptions,
  type BackupJobSummary,
  runBackupJob,
} from "./src/app/jobs/backup_job.ts";
export type { BackupProgress } from "./src/app/agent/backup_client.ts";
export {
  type AgentEvent,
  AgentListenError,
  type AgentOptions,
  runAgent,
} from "./src/app/agent/agent.ts";
export type { AgentHooks } from "./src/app/agent/agent_side.ts";
export {
  type AgentKey,
  AgentKeyError,
  importAgentKey,
  loadAgentKey,
} from "./src/app/hosts/agent_key.ts";
export {
  type AgentJobOptions,
  parseAgentAddress,
  type RestoreJobSummary,
  runAgentBackup,
  runAgentRestore,
} from "./src/app/jobs/agent_job.ts";
export type { JobRegion } from "./src/app/hosts/side_host.ts";
export { type PathReport, validateAgent, type ValidateReport } from "./src/app/server/validate.ts";
export {
  type BackupSummary,
  type LocalBackupOptions,
  runLocalBackup,
} from "./src/app/jobs/local_backup.ts";
export type { ChunkSink } from "./src/app/agent/tar_pack.ts";
export type { WriterStep } from "./src/app/repository/snapshot_writer.ts";
export type { ExcludedPath } from "./src/app/agent/source_exclusions.ts";
export type { ArchiveChannel } from "./src/app/agent/snapshot_source.ts";
export type { SkippedEntry } from "./src/app/agent/tree_walk.ts";
export {
  type RestoreOptions,
  type RestoreProblem,
  restoreSnapshot,
  type RestoreSummary,
} from "./src/app/repository/restore.ts";
export type { ArchiveReader } from "./src/app/repository/_tar_member.ts";
export type { RestoreHooks } from "./src/app/repository/_restore_target.ts";
export {
  BackupError,
  RepositoryError,
  type RepositoryErrorCode,
  RestoreError,
  type RestoreErrorCode,
  SourceError,
  type SourceErrorCode,
} from "./src/app/errors.ts";
export {
  type VerifyProblem,
  type VerifyReport,
  verifyRepository,
} from "./src/app/repository/verify.ts";
export {
  type ForgetOptions,
  type ForgetReport,
  forgetSnapshots,
  type ForgetStep,
} from "./src/app/repository/forget.ts";
export {
  type PrunedArchive,
  type PruneOptions,
  type PruneReport,
  pruneRepository,
  type PruneStep,
} from "./src/app/repository/prune.ts";
export {
  type ConsolidateOptions,
  type ConsolidateReport,
  consolidateSnapshot,
  type ConsolidateStep,
} from "./src/app/repository/consolidate.ts";
export {
  applyRetention,
  type RetentionOptions,
  type RetentionReport,
} from "./src/app/repository/retention.ts";
export type { CommonStep, MaintenanceOptions } from "./src/app/repository/_maintenance.ts";
export type { ManifestHead } from "./src/core/backup/manifest_stream.ts";
export {
  chooseParent,
  initRepository,
  latestSnapshot,
  listSnapshots,
  openRepository,
  type ParentChoice,
  readManifest,
  type Repository,
} from "./src/app/repository/repository.ts";
export {
  type EntriesPage,
  listSnapshotSummaries,
  readEntriesPage,
  type SnapshotSummary,
} from "./src/app/repository/snapshot_summaries.ts";
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
export type { ZeroCopySockets } from "./src/adapters/shm_zero_copy.ts";
export type { RegionMemory } from "./src/core/stp/memory.ts";
export type { StgLayout } from "./src/core/stp/layout.ts";
export { type HostSlot, hostSlots } from "./src/core/stp/hosts.ts";
export type { FenceRecord } from "./src/core/stp/fence.ts";
export { pickStg, RINGS_PER_CONNECTION } from "./src/core/stp/stg_pick.ts";
export {
  type BlockReport,
  type RegionReport,
  regionReport,
  type StgReport,
} from "./src/core/stp/report.ts";
export { checkStgInfo, type StgInfoMismatch } from "./src/core/handshake/stg_info.ts";
