/**
 * The network-only flow: Fig. 4 alone, the seeds' "prior art network backup" (control and error
 * connections on the WKP, no storage). lanfree falls back to it when the storage path cannot be
 * set up (no region, no free control block, no STG space), or runs it on purpose
 * (`--channel network`); the data then travels on the control connection.
 *
 * The rows are the file-system flow's own `net` lane, unchanged, so the steps and failure
 * paths are exactly those of Fig. 4.
 *
 * @module
 */

import type { HandshakeConfig } from "./config.ts";
import { FS_CLIENT_TABLE, FS_SERVER_TABLE } from "./fs_flow.ts";
import { createTableMachine } from "./machine.ts";
import type { Flow, HandshakeMachine } from "./types.ts";

/** The server's Fig. 4 lane alone: channels control and error. */
export const NETWORK_ONLY_SERVER_FLOW: Flow = {
  role: "fs-server",
  lanes: ["net"],
  table: FS_SERVER_TABLE.filter((row) => row.lane === "net"),
  channels: { control: "control", error: "error" },
};

/** The client's Fig. 4 lane alone. */
export const NETWORK_ONLY_CLIENT_FLOW: Flow = {
  role: "fs-client",
  lanes: ["net"],
  table: FS_CLIENT_TABLE.filter((row) => row.lane === "net"),
  channels: { control: "control", error: "error" },
};

/**
 * Builds a network-only machine.
 *
 * @param side `server` (initiator) or `client` (listens on the WKP)
 * @param config the handshake configuration (its `stg` is not used)
 * @returns a machine in status `idle`
 *
 * @example
 * ```ts
 * import { createNetworkOnlyHandshake } from "./network_only.ts";
 * import { parseHandshakeConfig } from "./config.ts";
 * const config = parseHandshakeConfig({ wellKnownPort: 7000 });
 * if (!config.ok) throw new Error(config.message);
 * const actions = createNetworkOnlyHandshake("server", config.value).handle({ type: "start" }, 0);
 * console.assert(actions.length === 1 && actions[0]!.type === "socket");
 * ```
 */
export function createNetworkOnlyHandshake(
  side: "server" | "client",
  config: HandshakeConfig,
): HandshakeMachine {
  return createTableMachine(
    side === "server" ? NETWORK_ONLY_SERVER_FLOW : NETWORK_ONLY_CLIENT_FLOW,
    config,
  );
}
