/**
 * lanfree's conformance suites, for checking an implementation of your own against lanfree's
 * rules: the descriptor rule and the socket model, the control-message codec, frame limits,
 * the storage transport over a region, the two handshakes, and a backup implementation. Each
 * suite takes the implementation under test as an argument, so none of them needs Deno;
 * {@link runSuites} runs them and reports, for a failure, the counterexample with the seed and
 * path that replay it.
 *
 * Also exported: every interface a suite takes ({@link RegionFactory} and the
 * {@link RegionMemory} a region lives in, {@link SocketsUnderTest}, {@link MessageCodec},
 * {@link FrameCodec}, {@link MachineFactory}, {@link BackupHarness}) and the types those reach.
 *
 * @example Checking a region implementation of your own
 * ```ts
 * import assert from "node:assert/strict";
 * import { attachRegion, formatRegion } from "./mod.ts";
 * import { type RegionFactory, type RegionMemory, runSuites, stpSuite } from "./conformance.ts";
 *
 * // Your memory: here plain reads and writes over an ArrayBuffer (one thread).
 * function myMemory(buffer: ArrayBuffer): RegionMemory {
 *   const words = new Int32Array(buffer);
 *   const bytes = new Uint8Array(buffer);
 *   return {
 *     byteLength: buffer.byteLength,
 *     load: (i) => words[i]!,
 *     store: (i, v) => void (words[i] = v),
 *     compareExchange: (i, expected, next) => {
 *       const old = words[i]!;
 *       if (old === (expected | 0)) words[i] = next;
 *       return old;
 *     },
 *     add: (i, delta) => {
 *       const old = words[i]!;
 *       words[i] = (old + delta) | 0;
 *       return old;
 *     },
 *     notify: () => {},
 *     readBytes: (at, into) => into.set(bytes.subarray(at, at + into.length)),
 *     writeBytes: (at, from) => bytes.set(from, at),
 *   };
 * }
 * const myRegions: RegionFactory = {
 *   name: "my-regions",
 *   create(config) {
 *     const formatted = formatRegion(config, crypto.randomUUID());
 *     return formatted.ok ? this.attach(new Uint8Array(formatted.value)) : formatted;
 *   },
 *   attach(bytes) {
 *     const buffer = new ArrayBuffer(bytes.length);
 *     new Uint8Array(buffer).set(bytes);
 *     const layout = attachRegion(buffer);
 *     return layout.ok ? { ok: true, value: { memory: myMemory(buffer), layout: layout.value } } : layout;
 *   },
 * };
 * const results = await runSuites([stpSuite(myRegions)], { runs: 5, seed: 1 });
 * for (const result of results) assert.ok(result.passed, result.report ?? result.property);
 * ```
 *
 * @module
 */

export {
  type CheckDetails,
  type CheckParameters,
  failureReport,
  type StrayErrors,
  type Suite,
  type SuiteProperty,
} from "./property-tests/_suite.ts";
export { type PropertyResult, type RunOptions, runSuites } from "./property-tests/_runner.ts";
export {
  descriptorSuite,
  socketsSuite,
  type SocketsUnderTest,
} from "./property-tests/dispatch_suite.ts";
export { type MessageCodec, wireSuite } from "./property-tests/wire_suite.ts";
export { type FrameCodec, type FrameEnds, framesSuite } from "./property-tests/frames_suite.ts";
export { stpSuite } from "./property-tests/stp_suite.ts";
export { handshakeSuite, type MachineFactory } from "./property-tests/handshake_suite.ts";
export {
  type BackupHarness,
  backupSuite,
  type ChangeSpec,
  type NodeSpec,
  type SeenEntry,
} from "./property-tests/backup_suite.ts";

export { type KeepPolicy, retentionSuite } from "./property-tests/retention_suite.ts";

// The types the suites' arguments reach.
export type { SocketKind } from "./src/core/dispatch/descriptor.ts";
export {
  type Failure,
  type Result,
  SOCKET_ERROR_CODES,
  type SocketCall,
  type SocketErrorCode,
  type Success,
} from "./src/core/dispatch/errors.ts";
export type {
  Address,
  NetworkAddress,
  Sockets,
  StorageAddress,
} from "./src/core/dispatch/sockets.ts";
export {
  type AckMessage,
  type DescriptorMessage,
  type ErrorMessage,
  type Message,
  MESSAGE_TAGS,
  type MessageOf,
  type MessageType,
  type PortMessage,
  type RegionIdMessage,
  type StgIdMessage,
  type StgLengthMessage,
  type WellKnownMessage,
} from "./src/core/wire/messages.ts";
export type { Region, RegionFactory, WaitResult } from "./src/core/stp/region.ts";
export type { RegionMemory } from "./src/core/stp/memory.ts";
export type { RegionConfig, RegionLayout, StgConfig, StgLayout } from "./src/core/stp/layout.ts";
export type { AttachedRegion, HandshakeConfig, StgInfo } from "./src/core/handshake/config.ts";
export type {
  ActionBase,
  Channels,
  FailureOrigin,
  FailureReason,
  HandshakeAction,
  HandshakeInput,
  HandshakeMachine,
  HandshakeRole,
  HandshakeStatus,
  Learned,
  ResultInput,
  SocketAction,
  Step,
} from "./src/core/handshake/types.ts";
export type {
  KeepDecision,
  KeepRules,
  RetentionClock,
  RetentionGroup,
  RetentionSnapshot,
} from "./src/core/backup/retention.ts";
