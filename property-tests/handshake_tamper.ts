/**
 * The tampering property of the handshake suite: a message arrives well formed (it decodes) but
 * with one field changed on its way: a non-zero or wrong-length well-known string, a wrong
 * echoed descriptor, a port of the wrong kind or one nobody listens on, a wrong STG id, STG
 * length or region id. The side that must notice fails at the step that checks or uses the
 * value, with a typed reason; it never ends established. Faults of `sim.ts` only ever make
 * frames undecodable; this one is made by the sending machine's own actions being rewritten,
 * so it runs over any {@link MachineFactory}.
 *
 * @module
 */

import fc from "fast-check";
import type { SocketErrorCode } from "../src/core/dispatch/errors.ts";
import {
  GOLDEN_WELL_KNOWN_PORT,
  runSimulation,
  type Side,
  type SimFlow,
  simPair,
} from "../src/core/handshake/sim.ts";
import type {
  HandshakeAction,
  HandshakeInput,
  HandshakeMachine,
  HandshakeRole,
} from "../src/core/handshake/types.ts";
import {
  decodeMessage,
  DESCRIPTOR_VALUE_MAX,
  encodeMessage,
  type Message,
  type MessageOf,
  type MessageType,
  WELL_KNOWN_BYTES,
  WELL_KNOWN_BYTES_MAX,
} from "../src/core/wire/messages.ts";
import { expectClean, failWith } from "./_handshake_outcome.ts";
import type { MachineFactory } from "./handshake_suite.ts";

/** One field changed on its way, and where the change must be noticed. */
export interface Tampering {
  /** The flow. */
  readonly flow: SimFlow;
  /** The side whose message is changed, and the step it sends it at. */
  readonly sender: Side;
  /** The sending step (as in the golden transcripts). */
  readonly sentAt: string;
  /** The message changed (the first of this type sent at `sentAt`). */
  readonly type: MessageType;
  /** What is changed, in words. */
  readonly field: string;
  /** A well-formed message of the same type with that field changed (`pick` chooses how). */
  readonly change: (message: Message, pick: number) => Message;
  /** The side that must fail: the receiver, or the side that checks an echo of the value. */
  readonly detector: Side;
  /** The steps its failure may carry: the step that checks the value, or the one that uses it. */
  readonly failsAt: readonly string[];
  /** The code of that failure. */
  readonly code: SocketErrorCode;
}

/** The message as its type, for a change that only applies to that type. */
function as<T extends MessageType>(message: Message, type: T): MessageOf<T> {
  if (message.type !== type) throw new Error(`tampering expected ${type}, got ${message.type}`);
  return message as MessageOf<T>;
}

/** Ports 1..1023: nothing in the simulated host listens there (well-known 7000, dynamic 49152+). */
const UNUSED_PORTS = 1023;

const nonZeroByte = (m: Message, pick: number): Message => {
  const bytes = Uint8Array.from(as(m, "wellKnown").bytes);
  bytes[pick % bytes.length] = 1 + (pick % 255);
  return { type: "wellKnown", bytes };
};
const otherLength = (m: Message, pick: number): Message => {
  const length = 1 + (pick % (WELL_KNOWN_BYTES_MAX - 1));
  as(m, "wellKnown");
  return {
    type: "wellKnown",
    bytes: new Uint8Array(length >= WELL_KNOWN_BYTES ? length + 1 : length),
  };
};
const otherDescriptor = (m: Message, pick: number): Message => ({
  type: "descriptor",
  fd: (as(m, "descriptor").fd + 1 + (pick % 1000)) % (DESCRIPTOR_VALUE_MAX + 1),
});
const otherKind = (m: Message): Message => {
  const port = as(m, "port");
  return { ...port, kind: port.kind === "network" ? "storage" : "network" };
};
const deadPort = (m: Message, pick: number): Message => ({
  ...as(m, "port"),
  port: 1 + (pick % UNUSED_PORTS),
});
const otherStgId = (m: Message, pick: number): Message => ({
  type: "stgId",
  stg: (as(m, "stgId").stg + 1 + (pick % 0xfffe)) % 0x10000,
});
const otherStgLength = (m: Message, pick: number): Message => {
  const lengthBytes = as(m, "stgLength").lengthBytes;
  const delta = 1 + (pick % 1_000_000);
  return {
    type: "stgLength",
    lengthBytes: lengthBytes > delta ? lengthBytes - delta : lengthBytes + delta,
  };
};
const otherRegionId = (m: Message, pick: number): Message => {
  const id = as(m, "regionId").regionId;
  const digits = [...id].flatMap((c, i) => (c === "-" ? [] : [i]));
  const at = digits[pick % digits.length]!;
  const digit = (parseInt(id[at]!, 16) + 1 + (pick % 15)) % 16;
  return { type: "regionId", regionId: id.slice(0, at) + digit.toString(16) + id.slice(at + 1) };
};

/** One row of {@link TAMPERINGS}. */
function row(
  flow: SimFlow,
  sender: Side,
  sentAt: string,
  type: MessageType,
  field: string,
  change: Tampering["change"],
  detector: Side,
  failsAt: readonly string[],
  code: SocketErrorCode,
): Tampering {
  return { flow, sender, sentAt, type, field, change, detector, failsAt, code };
}

// deno-fmt-ignore
/**
 * Every tampering the property draws from: each field of each message whose value a side
 * checks (well-known string, echoed descriptor, port kind, STG info) or uses (port number). The
 * server echoes at 100 the descriptor it received at 94, so a change at 122 is caught at 126.
 */
export const TAMPERINGS: readonly Tampering[] = [
  row("fs", "server", "90",  "wellKnown",  "well-known string (a non-zero byte)", nonZeroByte,     "client", ["120", "122"],  "EPROTO"),
  row("fs", "server", "90",  "wellKnown",  "well-known string (another length)",  otherLength,     "client", ["120", "122"],  "EPROTO"),
  row("fs", "server", "100", "descriptor", "echoed descriptor",                   otherDescriptor, "client", ["126", "126+"], "EPROTO"),
  row("fs", "client", "122", "descriptor", "descriptor (echoed back)",            otherDescriptor, "client", ["126", "126+"], "EPROTO"),
  row("fs", "server", "138", "stgId",      "STG id",                              otherStgId,      "client", ["160", "162"],  "EADDRNOTAVAIL"),
  row("fs", "server", "138", "stgLength",  "STG length",                          otherStgLength,  "client", ["160", "162"],  "EADDRNOTAVAIL"),
  row("fs", "server", "138", "regionId",   "region id",                           otherRegionId,   "client", ["160", "162"],  "EADDRNOTAVAIL"),
  row("fs", "client", "170", "port",       "port kind",                           otherKind,       "server", ["140", "142"],  "EPROTO"),
  row("fs", "client", "170", "port",       "port number (nobody listens there)",  deadPort,        "server", ["146"],         "ECONNREFUSED"),
  row("db", "client", "196", "port",       "port kind",                           otherKind,       "server", ["224", "226"],  "EPROTO"),
  row("db", "client", "196", "port",       "port number (nobody listens there)",  deadPort,        "server", ["234"],         "ECONNREFUSED"),
  row("db", "server", "236", "stgId",      "STG id",                              otherStgId,      "client", ["200", "202"],  "EADDRNOTAVAIL"),
  row("db", "server", "236", "stgLength",  "STG length",                          otherStgLength,  "client", ["200", "202"],  "EADDRNOTAVAIL"),
  row("db", "server", "236", "regionId",   "region id",                           otherRegionId,   "client", ["200", "202"],  "EADDRNOTAVAIL"),
  row("db", "client", "210", "port",       "port kind",                           otherKind,       "server", ["238", "240"],  "EPROTO"),
  row("db", "client", "210", "port",       "port number (nobody listens there)",  deadPort,        "server", ["244"],         "ECONNREFUSED"),
];

const ROLES: Record<SimFlow, Record<Side, HandshakeRole>> = {
  fs: { server: "fs-server", client: "fs-client" },
  db: { server: "db-server", client: "db-client" },
};

/**
 * The same machine with its `handle` replaced.
 *
 * @param machine a machine
 * @param handle the new `handle`, given the machine's own
 * @returns a machine that is `machine` in everything but `handle`
 */
export function withHandle(
  machine: HandshakeMachine,
  handle: (
    own: (input: HandshakeInput, nowMs: number) => HandshakeAction[],
    input: HandshakeInput,
    nowMs: number,
  ) => HandshakeAction[],
): HandshakeMachine {
  const own = machine.handle.bind(machine);
  return new Proxy(machine, {
    get(target, key) {
      if (key === "handle") {
        return (input: HandshakeInput, nowMs: number) => handle(own, input, nowMs);
      }
      return Reflect.get(target, key, target);
    },
  });
}

/** What the tampering did: the message as sent and as delivered (once it fired). */
interface Fired {
  sent?: Message;
  delivered?: Message;
}

/** A factory whose sending machine has its message changed on its way. */
function tampered(
  factory: MachineFactory,
  tampering: Tampering,
  pick: number,
  fired: Fired,
): MachineFactory {
  return (role, config) => {
    const machine = factory(role, config);
    if (role !== ROLES[tampering.flow][tampering.sender]) return machine;
    const rewrite = (action: HandshakeAction): HandshakeAction => {
      if (fired.sent !== undefined || action.type !== "send") return action;
      if (action.step !== tampering.sentAt || action.message.type !== tampering.type) return action;
      const delivered = tampering.change(action.message, pick);
      const decoded = decodeMessage(encodeMessage(delivered));
      if (!decoded.ok) {
        throw new Error(`a tampered ${tampering.type} is not well formed: ${decoded.message}`);
      }
      Object.assign(fired, { sent: action.message, delivered });
      return { ...action, message: delivered };
    };
    return withHandle(machine, (own, input, nowMs) => own(input, nowMs).map(rewrite));
  };
}

/**
 * The property: with one field of one message changed on its way, under any delays and
 * interleaving, the side that must notice ends failed at the step that checks or uses the
 * value, with the expected code; the run keeps the simulation's end rules (nothing leaks, no
 * silent disagreement).
 *
 * @param factory the machines under test
 * @returns a fast-check property
 */
export function tamperProperty(
  factory: MachineFactory,
): fc.IProperty<[Tampering, number, number, number]> {
  return fc.property(
    fc.constantFrom(...TAMPERINGS),
    fc.nat(),
    fc.integer(),
    fc.integer({ min: 0, max: 60 }),
    (tampering, pick, seed, delayMsMax) => {
      const fired: Fired = {};
      const pair = simPair(tampering.flow, tampered(factory, tampering, pick, fired), {
        wellKnownPort: GOLDEN_WELL_KNOWN_PORT,
      });
      const outcome = runSimulation(pair, { seed, delayMsMax });
      const what = `${tampering.field} changed at step ${tampering.sentAt} (${
        JSON.stringify(fired, (_k, v) => (v instanceof Uint8Array ? [...v] : v))
      })`;
      if (fired.sent === undefined) failWith(outcome, `${what}: the message was never sent`);
      expectClean(outcome);
      const end = outcome[tampering.detector];
      if (end.status !== "failed") {
        failWith(outcome, `${what}: the ${tampering.detector} ended ${end.status}, not failed`);
      }
      const reason = end.reason;
      if (
        reason === undefined || !tampering.failsAt.includes(reason.step) ||
        reason.code !== tampering.code || reason.message.length === 0
      ) {
        failWith(
          outcome,
          `${what}: the ${tampering.detector} must fail with ${tampering.code} at step ${
            tampering.failsAt.join(" or ")
          }, failed with ${JSON.stringify(reason)}`,
        );
      }
    },
  );
}
