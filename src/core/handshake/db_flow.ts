/**
 * The database flow (Fig. 5): the client initiates; one lane (`main`), strictly in order.
 *
 * The client listens on a dynamic port, connects to the server's WKP and sends that port; the
 * server acknowledges, connects back to the dynamic port and sends the STG info there (step 236:
 * the STG id, that STG's length and, added by lanfree, the region id); the client checks all
 * three against the region it attached (200-202) and answers with its dynamic STP port; STP connect/accept; both
 * sides close the dynamic-port connection (214, 246). Result: one channel, `data`, through
 * storage. Rows are `step, lane, state, event, next state, effects`. `N-x` marks a call the
 * seeds imply before step N (the server's WKP listener, the bind before 234); `N+` marks what
 * lanfree adds after step N (closing the WKP bootstrap sockets and the listeners).
 *
 * @module
 */

import {
  accept,
  close,
  done,
  listen,
  local,
  peer,
  received,
  recv,
  reject,
  row,
  send,
  socket,
  storage,
} from "./_rows.ts";
import type { HandshakeConfig } from "./config.ts";
import { createTableMachine } from "./machine.ts";
import { NIL_REGION_ID } from "../stp/layout.ts";
import { checkStgInfo } from "./stg_info.ts";
import { DONE, type Flow, type HandshakeMachine, IDLE, type Row } from "./types.ts";

// deno-fmt-ignore
/** The database client's table (column 180 of the seeds). */
export const DB_CLIENT_TABLE: readonly Row[] = [
  row("182",  "main", IDLE,                    "start",     "DYN_OPENING",        () => [socket("network", "dynListener")]),
  row("184",  "main", "DYN_OPENING",           "opened",    "DYN_BINDING",        (c) => [{ call: "bind", fd: "dynListener", address: local(c, 0) }]),
  row("186",  "main", "DYN_BINDING",           "bound",     "DYN_LISTENING",      () => [listen("dynListener")]),
  row("188",  "main", "DYN_LISTENING",         "listening", "DYN_NAMING",         () => [{ call: "getsockname", fd: "dynListener" }]),
  row("190",  "main", "DYN_NAMING",            "named",     "WKP_OPENING",        (c, i) => {
    if (i.type !== "named" || i.address.kind !== "network" || i.address.port < 1) {
      return [reject("step 188: getsockname gave no network port")];
    }
    c.learned.ownPort = i.address.port;
    return [socket("network", "wkp")];
  }),
  row("192",  "main", "WKP_OPENING",           "opened",    "WKP_BINDING",        (c) => [{ call: "bind", fd: "wkp", address: local(c, c.config.connectorBindPort) }]),
  row("194",  "main", "WKP_BINDING",           "bound",     "WKP_CONNECTING",     (c) => [{ call: "connect", fd: "wkp", address: peer(c, c.config.wellKnownPort) }]),
  row("196",  "main", "WKP_CONNECTING",        "connected", "PORT_SENDING",       (c) => [send("wkp", { type: "port", kind: "network", port: c.learned.ownPort ?? 0 })]),
  row("196A", "main", "PORT_SENDING",          "sent",      "ACK_AWAITED",        () => [recv("wkp")]),
  row("198",  "main", "ACK_AWAITED",           "received:ack", "DYN_ACCEPTING",   () => [accept("dynListener", "dyn")]),
  row("200",  "main", "DYN_ACCEPTING",         "accepted",  "STG_ID_AWAITED",     () => [recv("dyn")]),
  row("200",  "main", "STG_ID_AWAITED",        "received:stgId", "STG_LENGTH_AWAITED", (c, i) => {
    const m = received(i);
    if (m.type === "stgId") c.learned.stg = m.stg;
    return [recv("dyn")];
  }),
  row("200",  "main", "STG_LENGTH_AWAITED",    "received:stgLength", "REGION_ID_AWAITED", (c, i) => {
    const m = received(i);
    if (m.type === "stgLength") c.learned.stgLengthBytes = m.lengthBytes;
    return [recv("dyn")];
  }),
  row("202",  "main", "REGION_ID_AWAITED",     "received:regionId", "DATA_LISTENER_OPENING", (c, i) => {
    const m = received(i);
    if (m.type === "regionId") c.learned.regionId = m.regionId;
    const mismatch = checkStgInfo("200", c.learned, c.config.region);
    if (mismatch !== undefined) return [reject(mismatch.message, { code: mismatch.code, step: "200" })];
    return [socket("storage", "dataListener")];
  }),
  row("204",  "main", "DATA_LISTENER_OPENING", "opened",    "DATA_LISTENER_BINDING", (c) => [{ call: "bind", fd: "dataListener", address: storage(c, 0) }]),
  row("206",  "main", "DATA_LISTENER_BINDING", "bound",     "DATA_LISTENING",     () => [listen("dataListener")]),
  row("208",  "main", "DATA_LISTENING",        "listening", "DATA_NAMING",        () => [{ call: "getsockname", fd: "dataListener" }]),
  row("210",  "main", "DATA_NAMING",           "named",     "PORT_SENDING_STP",   (_c, i) => {
    if (i.type !== "named" || i.address.kind !== "storage" || i.address.port < 1) {
      return [reject("step 208: getsockname gave no storage port")];
    }
    return [send("dyn", { type: "port", kind: "storage", port: i.address.port })];
  }),
  row("212",  "main", "PORT_SENDING_STP",      "sent",      "DATA_ACCEPTING",     () => [accept("dataListener", "data")]),
  row("214",  "main", "DATA_ACCEPTING",        "accepted",  DONE,                 () => [close("dyn"), close("dynListener", "214+"), close("dataListener", "214+"), close("wkp", "214+"), done]),
];

// deno-fmt-ignore
/** The database server's table (column 220 of the seeds). */
export const DB_SERVER_TABLE: readonly Row[] = [
  row("222-socket", "main", IDLE,               "start",     "WKP_LISTENER_OPENING", () => [socket("network", "wkpListener")]),
  row("222-bind",   "main", "WKP_LISTENER_OPENING", "opened", "WKP_LISTENER_BINDING", (c) => [{ call: "bind", fd: "wkpListener", address: local(c, c.config.wellKnownPort) }]),
  row("222-listen", "main", "WKP_LISTENER_BINDING", "bound",  "WKP_LISTENING",      () => [listen("wkpListener")]),
  row("222",  "main", "WKP_LISTENING",         "listening", "WKP_ACCEPTING",      () => [accept("wkpListener", "wkp")]),
  row("224",  "main", "WKP_ACCEPTING",         "accepted",  "PORT_AWAITED",       () => [recv("wkp")]),
  row("226",  "main", "PORT_AWAITED",          "received:port", "ACK_SENDING",    (c, i) => {
    const m = received(i);
    if (m.type !== "port" || m.kind !== "network") return [reject("step 224 needs a network port")];
    c.learned.peerPort = m.port;
    return [send("wkp", { type: "ack" })];
  }),
  row("228",  "main", "ACK_SENDING",           "sent",      "DYN_OPENING",        (c) => { c.learned.stg = c.config.stg?.id; return [socket("network", "dyn")]; }),
  row("234-bind", "main", "DYN_OPENING",       "opened",    "DYN_BINDING",        (c) => [{ call: "bind", fd: "dyn", address: local(c, c.config.connectorBindPort) }]),
  row("234",  "main", "DYN_BINDING",           "bound",     "DYN_CONNECTING",     (c) => [{ call: "connect", fd: "dyn", address: peer(c, c.learned.peerPort ?? 0) }]),
  row("236",  "main", "DYN_CONNECTING",        "connected", "STG_ID_SENDING",     (c) => [send("dyn", { type: "stgId", stg: c.learned.stg ?? 0 })]),
  row("236",  "main", "STG_ID_SENDING",        "sent",      "STG_LENGTH_SENDING", (c) => [send("dyn", { type: "stgLength", lengthBytes: c.config.stg?.lengthBytes ?? 1 })]),
  row("236",  "main", "STG_LENGTH_SENDING",    "sent",      "REGION_ID_SENDING",  (c) => [send("dyn", { type: "regionId", regionId: c.config.stg?.regionId ?? NIL_REGION_ID })]),
  row("238",  "main", "REGION_ID_SENDING",     "sent",      "PORT_AWAITED_STP",   () => [recv("dyn")]),
  row("240",  "main", "PORT_AWAITED_STP",      "received:port", "DATA_OPENING",   (c, i) => {
    const m = received(i);
    if (m.type !== "port" || m.kind !== "storage") return [reject("step 238 needs a storage port")];
    c.learned.peerPort = m.port;
    return [socket("storage", "data")];
  }),
  row("242",  "main", "DATA_OPENING",          "opened",    "DATA_BINDING",       (c) => [{ call: "bind", fd: "data", address: storage(c, 0) }]),
  row("244",  "main", "DATA_BINDING",          "bound",     "DATA_CONNECTING",    (c) => [{ call: "connect", fd: "data", address: storage(c, c.learned.peerPort ?? 0) }]),
  row("246",  "main", "DATA_CONNECTING",       "connected", DONE,                 () => [close("dyn"), close("wkp", "246+"), close("wkpListener", "246+"), done]),
];

/** The client's flow: one channel, data, through storage. */
export const DB_CLIENT_FLOW: Flow = {
  role: "db-client",
  lanes: ["main"],
  table: DB_CLIENT_TABLE,
  channels: { data: "data" },
};

/** The server's flow: the same channel, from the connecting side. */
export const DB_SERVER_FLOW: Flow = {
  role: "db-server",
  lanes: ["main"],
  table: DB_SERVER_TABLE,
  channels: { data: "data" },
};

/**
 * Builds the database client machine (the initiator of Fig. 5).
 *
 * @param config a validated configuration
 * @returns a machine in status `idle`; feed it `start` after the server listens
 *
 * @example Starting opens the dynamic-port listener (step 182)
 * ```ts
 * import assert from "node:assert/strict";
 * import { createDbClient } from "./db_flow.ts";
 * import { parseHandshakeConfig } from "./config.ts";
 * const config = parseHandshakeConfig({ wellKnownPort: 7000 });
 * if (!config.ok) throw new Error(config.message);
 * const [first] = createDbClient(config.value).handle({ type: "start" }, 0);
 * assert.ok(first?.type === "socket" && first.step === "182");
 * ```
 */
export function createDbClient(config: HandshakeConfig): HandshakeMachine {
  return createTableMachine(DB_CLIENT_FLOW, config);
}

/**
 * Builds the database server machine (the accepting side of Fig. 5).
 *
 * @param config a validated configuration that names the STG (`stg`)
 * @returns a machine in status `idle`; feed it `start` before the client starts
 * @throws {RangeError} when the configuration has no `stg`
 *
 * @example Starting opens the WKP listener
 * ```ts
 * import assert from "node:assert/strict";
 * import { createDbServer } from "./db_flow.ts";
 * import { parseServerConfig } from "./config.ts";
 * const config = parseServerConfig({ wellKnownPort: 7000, stg: { id: 1, lengthBytes: 4096, regionId: crypto.randomUUID() } });
 * if (!config.ok) throw new Error(config.message);
 * const [first] = createDbServer(config.value).handle({ type: "start" }, 0);
 * assert.ok(first?.type === "socket" && first.step === "222-socket");
 * ```
 */
export function createDbServer(config: HandshakeConfig): HandshakeMachine {
  if (config.stg === undefined) throw new RangeError("the database server needs config.stg");
  return createTableMachine(DB_SERVER_FLOW, config);
}
