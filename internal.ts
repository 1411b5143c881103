/**
 * Everything of `mod.ts` plus lanfree's internals, for tools and for implementers who want the
 * same building blocks lanfree's own adapters use. **No stability promise**: what is here may
 * change shape in any release.
 *
 * - the descriptor table an adapter asks before each call ({@link SocketTable}) and the
 *   per-descriptor state machine as data ({@link TRANSITIONS});
 * - the handshake flows as tables of rows, each row carrying the seeds' step number, and the
 *   machine of each role;
 * - the runner's test for model-based failure reports, and the mapping from Deno's errors to
 *   socket error codes.
 *
 * @example The state table rules on a call
 * ```ts
 * import assert from "node:assert/strict";
 * import { checkCall, TRANSITIONS } from "./internal.ts";
 * assert.deepEqual(TRANSITIONS.created.listen, ["EINVAL", "listen before bind"]);
 * const verdict = checkCall({ phase: "created" }, "send");
 * assert.ok(!verdict.ok && verdict.code === "ENOTCONN");
 * ```
 *
 * @module
 */

export * from "./mod.ts";

// The descriptor table and the socket state machine.
export {
  BACKLOG_MAX,
  type CallOutcome,
  nextState,
  type SocketEntry,
  SocketTable,
  type WaitingCall,
} from "./src/core/dispatch/socket_table.ts";
export {
  checkCall,
  endsConnection,
  localAddressOf,
  type SocketPhase,
  type SocketState,
  type StateCall,
  TRANSITIONS,
  type Verdict,
} from "./src/core/dispatch/socket_state.ts";

// The handshake flows as tables.
export {
  DONE,
  type Effect,
  type FdName,
  type Flow,
  IDLE,
  type Learned,
  type Request,
  type Row,
  type RowContext,
  type RowEvent,
} from "./src/core/handshake/types.ts";
export {
  createFsClient,
  createFsServer,
  FS_CLIENT_FLOW,
  FS_CLIENT_TABLE,
  FS_SERVER_FLOW,
  FS_SERVER_TABLE,
} from "./src/core/handshake/fs_flow.ts";
export {
  createDbClient,
  createDbServer,
  DB_CLIENT_FLOW,
  DB_CLIENT_TABLE,
  DB_SERVER_FLOW,
  DB_SERVER_TABLE,
} from "./src/core/handshake/db_flow.ts";
export { type HandshakeFactory } from "./src/core/handshake/mod.ts";

// Runner and adapter helpers.
export { isModelBasedReport } from "./property-tests/_suite.ts";
export { codeOfDenoError } from "./src/adapters/tcp.ts";
