/**
 * The handshakes as pure state machines: the file-system flow (Figs. 4 and 4A) and the
 * database flow (Fig. 5), one machine per role.
 *
 * @example The four roles by name
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHandshake } from "./mod.ts";
 * import { parseServerConfig } from "./config.ts";
 * const config = parseServerConfig({ wellKnownPort: 7000, stg: { id: 1, lengthBytes: 4096, regionId: crypto.randomUUID() } });
 * if (!config.ok) throw new Error(config.message);
 * assert.ok(createHandshake("db-server", config.value).status === "idle");
 * ```
 *
 * @module
 */

import type { HandshakeConfig } from "./config.ts";
import { createDbClient, createDbServer } from "./db_flow.ts";
import { createFsClient, createFsServer } from "./fs_flow.ts";
import type { HandshakeMachine, HandshakeRole } from "./types.ts";

export * from "./config.ts";
export * from "./db_flow.ts";
export * from "./fs_flow.ts";
export * from "./types.ts";

/** Builds a machine for a role: what the conformance suites take as the implementation. */
export type HandshakeFactory = (role: HandshakeRole, config: HandshakeConfig) => HandshakeMachine;

/**
 * Builds the machine of `role`.
 *
 * @param role one of the four roles
 * @param config a validated configuration (the server roles need `stg`)
 * @returns a machine in status `idle`
 */
export function createHandshake(role: HandshakeRole, config: HandshakeConfig): HandshakeMachine {
  switch (role) {
    case "fs-server":
      return createFsServer(config);
    case "fs-client":
      return createFsClient(config);
    case "db-client":
      return createDbClient(config);
    case "db-server":
      return createDbServer(config);
  }
}

/**
 * Whether a role listens first: the file-system client (Figs. 4 and 4A; the network path too)
 * and the database server (Fig. 5). The flow decides it, so every host asks here. A listening
 * side must have bound its listeners before its peer starts, since a refused connect is final.
 *
 * @param role one of the four roles
 * @returns true for `fs-client` and `db-server`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { listensFirst } from "./mod.ts";
 * assert.ok(listensFirst("fs-client") && listensFirst("db-server"));
 * assert.ok(!listensFirst("fs-server") && !listensFirst("db-client"));
 * ```
 */
export function listensFirst(role: HandshakeRole): boolean {
  return role === "fs-client" || role === "db-server";
}

/**
 * The role a side of a backup plays: the client owns the data, the server the repository. The
 * file-system flow and the network path (Fig. 4 alone) use the fs roles; the database flow the
 * db roles.
 *
 * @param side `client` (data host) or `server` (repository host)
 * @param flow `fs` or `db`
 * @returns the role
 */
export function roleOf(side: "client" | "server", flow: "fs" | "db"): HandshakeRole {
  if (flow === "fs") return side === "client" ? "fs-client" : "fs-server";
  return side === "client" ? "db-client" : "db-server";
}
