/**
 * The file-system flow (Figs. 4 and 4A): the server initiates; two lanes run in parallel.
 *
 * - Lane `net` (Fig. 4): two network connections on the WKP. The server sends the well-known
 *   string (zeros), the client answers with the descriptor of its accepted socket, the server
 *   opens the second connection and echoes that descriptor back, which the client checks.
 *   Result: channels `control` and `error`.
 * - Lane `stg` (Fig. 4A): a bootstrap connection on WKP+1 carries the STG info to the client
 *   (step 138: the STG id, that STG's length and, added by lanfree, the region id), which checks
 *   all three against the region it attached (steps 160-162) and sends its dynamic STP port back;
 *   then STP connect/accept. Result: `data`.
 *
 * Each lane advances on its own inputs; the machine is established when both lanes are DONE.
 * Rows are `step, lane, state, event, next state, effects`; the step is the seeds' number of
 * the call the row makes. `N+` marks what lanfree adds after step N (closing the listeners and
 * the bootstrap connections that are no channel).
 *
 * @module
 */

import { DESCRIPTOR_VALUE_MAX, WELL_KNOWN_BYTES, wellKnownString } from "../wire/messages.ts";
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

const isZeros = (bytes: Uint8Array): boolean =>
  bytes.length === WELL_KNOWN_BYTES && bytes.every((b) => b === 0);

// deno-fmt-ignore
/** The file-system server's table (columns 80 and 130 of the seeds). */
export const FS_SERVER_TABLE: readonly Row[] = [
  // Fig. 4: control and error connections on the WKP.
  row("82",  "net", IDLE,                 "start",     "CONTROL_OPENING",    () => [socket("network", "control")]),
  row("84",  "net", "CONTROL_OPENING",    "opened",    "CONTROL_BINDING",    (c) => [{ call: "bind", fd: "control", address: local(c, c.config.connectorBindPort) }]),
  row("86",  "net", "CONTROL_BINDING",    "bound",     "CONTROL_CONNECTING", (c) => [{ call: "connect", fd: "control", address: peer(c, c.config.wellKnownPort) }]),
  row("90",  "net", "CONTROL_CONNECTING", "connected", "ZEROS_SENDING",      () => [send("control", { type: "wellKnown", bytes: wellKnownString() })]),
  row("92",  "net", "ZEROS_SENDING",      "sent",      "DESCRIPTOR_AWAITED", () => [recv("control")]),
  row("94",  "net", "DESCRIPTOR_AWAITED", "received:descriptor", "ERROR_OPENING", (c, i) => {
    const m = received(i);
    if (m.type === "descriptor") c.learned.peerDescriptor = m.fd;
    return [socket("network", "error")];
  }),
  row("96",  "net", "ERROR_OPENING",      "opened",    "ERROR_BINDING",      (c) => [{ call: "bind", fd: "error", address: local(c, c.config.connectorBindPort) }]),
  row("98",  "net", "ERROR_BINDING",      "bound",     "ERROR_CONNECTING",   (c) => [{ call: "connect", fd: "error", address: peer(c, c.config.wellKnownPort) }]),
  row("100", "net", "ERROR_CONNECTING",   "connected", "DESCRIPTOR_SENDING", (c) => [send("error", { type: "descriptor", fd: c.learned.peerDescriptor ?? 0 })]),
  row("100", "net", "DESCRIPTOR_SENDING", "sent",      DONE,                 () => [done]),
  // Fig. 4A, in parallel: STG info on WKP+1, the client's STP port back, STP connect.
  row("132", "stg", IDLE,                 "start",     "BOOT_OPENING",       (c) => { c.learned.stg = c.config.stg?.id; return [socket("network", "boot")]; }),
  row("134", "stg", "BOOT_OPENING",       "opened",    "BOOT_BINDING",       (c) => [{ call: "bind", fd: "boot", address: local(c, c.config.connectorBindPort) }]),
  row("136", "stg", "BOOT_BINDING",       "bound",     "BOOT_CONNECTING",    (c) => [{ call: "connect", fd: "boot", address: peer(c, c.config.wellKnownPort + 1) }]),
  row("138", "stg", "BOOT_CONNECTING",    "connected", "STG_ID_SENDING",     (c) => [send("boot", { type: "stgId", stg: c.learned.stg ?? 0 })]),
  row("138", "stg", "STG_ID_SENDING",     "sent",      "STG_LENGTH_SENDING", (c) => [send("boot", { type: "stgLength", lengthBytes: c.config.stg?.lengthBytes ?? 1 })]),
  row("138", "stg", "STG_LENGTH_SENDING", "sent",      "REGION_ID_SENDING",  (c) => [send("boot", { type: "regionId", regionId: c.config.stg?.regionId ?? NIL_REGION_ID })]),
  row("140", "stg", "REGION_ID_SENDING",  "sent",      "PORT_AWAITED",       () => [recv("boot")]),
  row("142", "stg", "PORT_AWAITED",       "received:port", "DATA_OPENING",   (c, i) => {
    const m = received(i);
    if (m.type !== "port" || m.kind !== "storage") return [reject("step 140 needs a storage port")];
    c.learned.peerPort = m.port;
    return [socket("storage", "data")];
  }),
  row("144", "stg", "DATA_OPENING",       "opened",    "DATA_BINDING",       (c) => [{ call: "bind", fd: "data", address: storage(c, 0) }]),
  row("146", "stg", "DATA_BINDING",       "bound",     "DATA_CONNECTING",    (c) => [{ call: "connect", fd: "data", address: storage(c, c.learned.peerPort ?? 0) }]),
  row("146+", "stg", "DATA_CONNECTING",   "connected", DONE,                 () => [close("boot"), done]),
];

// deno-fmt-ignore
/** The file-system client's table (columns 110 and 150 of the seeds). */
export const FS_CLIENT_TABLE: readonly Row[] = [
  // Fig. 4: listen on the WKP, accept the two connections the configuration announced.
  row("112", "net", IDLE,                  "start",     "LISTENER_OPENING",   () => [socket("network", "listener")]),
  row("114", "net", "LISTENER_OPENING",    "opened",    "LISTENER_BINDING",   (c) => [{ call: "bind", fd: "listener", address: local(c, c.config.wellKnownPort) }]),
  row("115", "net", "LISTENER_BINDING",    "bound",     "LISTENER_LISTENING", () => [listen("listener")]),
  row("118", "net", "LISTENER_LISTENING",  "listening", "CONTROL_ACCEPTING",  () => [accept("listener", "control")]),
  row("120", "net", "CONTROL_ACCEPTING",   "accepted",  "ZEROS_AWAITED",      () => [recv("control")]),
  row("122", "net", "ZEROS_AWAITED",       "received:wellKnown", "DESCRIPTOR_SENDING", (c, i) => {
    const m = received(i);
    if (m.type !== "wellKnown" || !isZeros(m.bytes)) return [reject("step 120: wrong well-known string")];
    return [send("control", { type: "descriptor", fd: Math.min(c.fd("control"), DESCRIPTOR_VALUE_MAX) })];
  }),
  row("124", "net", "DESCRIPTOR_SENDING",  "sent",      "ERROR_ACCEPTING",    () => [accept("listener", "error")]),
  row("126", "net", "ERROR_ACCEPTING",     "accepted",  "DESCRIPTOR_AWAITED", () => [recv("error")]),
  row("126+", "net", "DESCRIPTOR_AWAITED", "received:descriptor", DONE,      (c, i) => {
    const m = received(i);
    if (m.type !== "descriptor" || m.fd !== c.fd("control")) {
      return [reject(`step 126: the server echoed a descriptor that is not ${c.fd("control")}`)];
    }
    return [close("listener"), done];
  }),
  // Fig. 4A, in parallel: listen on WKP+1, take the STG info, offer a dynamic STP port.
  row("152", "stg", IDLE,                  "start",     "BOOT_LISTENER_OPENING", () => [socket("network", "bootListener")]),
  row("154", "stg", "BOOT_LISTENER_OPENING", "opened",  "BOOT_LISTENER_BINDING", (c) => [{ call: "bind", fd: "bootListener", address: local(c, c.config.wellKnownPort + 1) }]),
  row("156", "stg", "BOOT_LISTENER_BINDING", "bound",   "BOOT_LISTENING",     () => [listen("bootListener")]),
  row("158", "stg", "BOOT_LISTENING",      "listening", "BOOT_ACCEPTING",     () => [accept("bootListener", "boot")]),
  row("160", "stg", "BOOT_ACCEPTING",      "accepted",  "STG_ID_AWAITED",     () => [recv("boot")]),
  row("160", "stg", "STG_ID_AWAITED",      "received:stgId", "STG_LENGTH_AWAITED", (c, i) => {
    const m = received(i);
    if (m.type === "stgId") c.learned.stg = m.stg;
    return [recv("boot")];
  }),
  row("160", "stg", "STG_LENGTH_AWAITED",  "received:stgLength", "REGION_ID_AWAITED", (c, i) => {
    const m = received(i);
    if (m.type === "stgLength") c.learned.stgLengthBytes = m.lengthBytes;
    return [recv("boot")];
  }),
  row("162", "stg", "REGION_ID_AWAITED",   "received:regionId", "DATA_LISTENER_OPENING", (c, i) => {
    const m = received(i);
    if (m.type === "regionId") c.learned.regionId = m.regionId;
    const mismatch = checkStgInfo("160", c.learned, c.config.region);
    if (mismatch !== undefined) return [reject(mismatch.message, { code: mismatch.code, step: "160" })];
    return [socket("storage", "dataListener")];
  }),
  row("164", "stg", "DATA_LISTENER_OPENING", "opened",  "DATA_LISTENER_BINDING", (c) => [{ call: "bind", fd: "dataListener", address: storage(c, 0) }]),
  row("166", "stg", "DATA_LISTENER_BINDING", "bound",   "DATA_LISTENING",     () => [listen("dataListener")]),
  row("168", "stg", "DATA_LISTENING",      "listening", "DATA_NAMING",        () => [{ call: "getsockname", fd: "dataListener" }]),
  row("170", "stg", "DATA_NAMING",         "named",     "PORT_SENDING",       (_c, i) => {
    if (i.type !== "named" || i.address.kind !== "storage" || i.address.port < 1) {
      return [reject("step 168: getsockname gave no storage port")];
    }
    return [send("boot", { type: "port", kind: "storage", port: i.address.port })];
  }),
  row("172", "stg", "PORT_SENDING",        "sent",      "DATA_ACCEPTING",     () => [accept("dataListener", "data")]),
  row("172+", "stg", "DATA_ACCEPTING",     "accepted",  DONE,                 () => [close("dataListener"), close("boot"), close("bootListener"), done]),
];

/** The server's flow: channels control and error on the network, data through storage. */
export const FS_SERVER_FLOW: Flow = {
  role: "fs-server",
  lanes: ["net", "stg"],
  table: FS_SERVER_TABLE,
  channels: { control: "control", error: "error", data: "data" },
};

/** The client's flow: the same channels, from the accepting side. */
export const FS_CLIENT_FLOW: Flow = {
  role: "fs-client",
  lanes: ["net", "stg"],
  table: FS_CLIENT_TABLE,
  channels: { control: "control", error: "error", data: "data" },
};

/**
 * Builds the file-system server machine (the initiator of Figs. 4 and 4A).
 *
 * @param config a validated configuration that names the STG (`stg`)
 * @returns a machine in status `idle`; feed it `start`
 * @throws {RangeError} when the configuration has no `stg`
 *
 * @example Starting opens the control socket and the WKP+1 bootstrap socket at once
 * ```ts
 * import assert from "node:assert/strict";
 * import { createFsServer } from "./fs_flow.ts";
 * import { parseServerConfig } from "./config.ts";
 * const config = parseServerConfig({ wellKnownPort: 7000, stg: { id: 1, lengthBytes: 4096, regionId: crypto.randomUUID() } });
 * if (!config.ok) throw new Error(config.message);
 * const actions = createFsServer(config.value).handle({ type: "start" }, 0);
 * assert.ok(actions.map((a) => "step" in a ? a.step : a.type).join(",") === "82,132");
 * ```
 */
export function createFsServer(config: HandshakeConfig): HandshakeMachine {
  if (config.stg === undefined) throw new RangeError("the file-system server needs config.stg");
  return createTableMachine(FS_SERVER_FLOW, config);
}

/**
 * Builds the file-system client machine (the accepting side of Figs. 4 and 4A).
 *
 * @param config a validated configuration
 * @returns a machine in status `idle`; feed it `start` before the server starts
 *
 * @example Starting opens the WKP listener and the WKP+1 listener
 * ```ts
 * import assert from "node:assert/strict";
 * import { createFsClient } from "./fs_flow.ts";
 * import { parseHandshakeConfig } from "./config.ts";
 * const config = parseHandshakeConfig({ wellKnownPort: 7000 });
 * if (!config.ok) throw new Error(config.message);
 * const actions = createFsClient(config.value).handle({ type: "start" }, 0);
 * assert.ok(actions.map((a) => "step" in a ? a.step : a.type).join(",") === "112,152");
 * ```
 */
export function createFsClient(config: HandshakeConfig): HandshakeMachine {
  return createTableMachine(FS_CLIENT_FLOW, config);
}
