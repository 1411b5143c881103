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
