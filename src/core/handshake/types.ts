/**
 * Inputs, actions and tables of the handshake state machines.
 *
 * A driver pumps a machine: it feeds {@link HandshakeInput}s with the current time and performs
 * the {@link HandshakeAction}s it gets back. Each socket action maps to one `Sockets` call and
 * carries a request `id`; the call's outcome goes back as one input with the same `id`:
 *
 * | action        | `Sockets` call            | input on success                    |
 * | ------------- | ------------------------- | ----------------------------------- |
 * | `socket`      | `socket(kind)`            | `opened { fd }`                     |
 * | `bind`        | `bind(fd, address)`       | `bound`                             |
 * | `listen`      | `listen(fd, backlog)`     | `listening`                         |
 * | `getsockname` | `getsockname(fd)`         | `named { address }`                 |
 * | `accept`      | `accept(fd)`              | `accepted { fd }`                   |
 * | `connect`     | `connect(fd, address)`    | `connected`                         |
 * | `send`        | `send(fd, frame(encodeMessage(message)))` | `sent`              |
 * | `recv`        | read one frame, `decodeMessage` | `received { message }`, or `peerClosed` at end of stream |
 * | `close`       | `close(fd)`               | `closed` (ignored by the machine)   |
 *
 * Any failed call (including a frame that does not decode) goes back as
 * `error { id, code, message }`.
 *
 * @module
 */

import type { SocketKind } from "../dispatch/descriptor.ts";
import type { SocketErrorCode } from "../dispatch/errors.ts";
import type { Address } from "../dispatch/sockets.ts";
import type { Message, MessageType } from "../wire/messages.ts";

/** A step number of the seeds' figures, as printed there (`"196A"`), or a lanfree label. */
export type Step = string;

/** The result of one request, named after what happened. */
export type ResultInput =
  | { readonly type: "opened"; readonly id: number; readonly fd: number }
  | { readonly type: "bound"; readonly id: number }
  | { readonly type: "listening"; readonly id: number }
  | { readonly type: "named"; readonly id: number; readonly address: Address }
  | { readonly type: "accepted"; readonly id: number; readonly fd: number }
  | { readonly type: "connected"; readonly id: number }
  | { readonly type: "sent"; readonly id: number }
  | { readonly type: "received"; readonly id: number; readonly message: Message }
  | { readonly type: "peerClosed"; readonly id: number }
  | { readonly type: "closed"; readonly id: number }
  | {
    readonly type: "error";
    readonly id: number;
    readonly code: SocketErrorCode;
    readonly message: string;
  };

/** Everything a machine can be told. */
export type HandshakeInput =
  | { readonly type: "start" }
  | { readonly type: "tick" }
  | ResultInput;

/** What every socket action carries. */
export interface ActionBase {
  /** The request id; the result comes back as an input with this id. */
  readonly id: number;
  /** The step of the seeds this call performs. */
  readonly step: Step;
}

/** One `Sockets` call to perform. */
export type SocketAction =
  | ActionBase & { readonly type: "socket"; readonly kind: SocketKind }
  | ActionBase & { readonly type: "bind"; readonly fd: number; readonly address: Address }
  | ActionBase & { readonly type: "listen"; readonly fd: number; readonly backlog: number }
  | ActionBase & { readonly type: "getsockname"; readonly fd: number }
  | ActionBase & { readonly type: "accept"; readonly fd: number }
  | ActionBase & { readonly type: "connect"; readonly fd: number; readonly address: Address }
  | ActionBase & { readonly type: "send"; readonly fd: number; readonly message: Message }
  | ActionBase & { readonly type: "recv"; readonly fd: number }
  | ActionBase & { readonly type: "close"; readonly fd: number };

/** The channels a handshake leaves open, by name (`control`, `error`, `data`). */
export type Channels = Readonly<Record<string, number>>;

/** Who caused a failure: this side (or its clock), or the peer and the network. */
export type FailureOrigin = "local" | "remote";

/** Why a handshake failed. */
export interface FailureReason {
  /** Who caused it. */
  readonly origin: FailureOrigin;
  /** What went wrong. */
  readonly code: SocketErrorCode;
  /** The step at which it failed. */
  readonly step: Step;
  /** What happened, in words. */
  readonly message: string;
}

/** Everything a machine can ask for. */
export type HandshakeAction =
  | SocketAction
  | { readonly type: "established"; readonly channels: Channels }
  | { readonly type: "failed"; readonly reason: FailureReason };

/** Where a machine is, as a whole. */
export type HandshakeStatus = "idle" | "handshaking" | "established" | "failed";

/** The four roles. */
export type HandshakeRole = "fs-server" | "fs-client" | "db-client" | "db-server";

/** A pure handshake state machine. */
export interface HandshakeMachine {
  /** The role this machine plays. */
  readonly role: HandshakeRole;
  /** Where it is as a whole. */
  readonly status: HandshakeStatus;
  /** The state of each lane (sub-flow), by lane name. */
  readonly laneStates: Readonly<Record<string, string>>;
  /** When the handshake times out, in ms on the caller's clock; `undefined` before `start`. */
  readonly deadlineMs: number | undefined;
  /** The failure, once failed. */
  readonly reason: FailureReason | undefined;
  /** The channels, once established. */
  readonly channels: Channels | undefined;
  /** Descriptors the machine has learned and not yet asked to close. */
  readonly openDescriptors: readonly number[];
  /**
   * Feeds one input at time `nowMs` (non-decreasing across calls).
   *
   * @returns the actions to perform, in order
   */
  handle(input: HandshakeInput, nowMs: number): HandshakeAction[];
}

/** A named descriptor slot of a flow (`"control"`, `"listener"`, ...). */
export type FdName = string;

/** Values a machine learns from its peer and its own calls. */
export interface Learned {
  /** The descriptor the peer sent (step 92). */
  peerDescriptor?: number;
  /** A port the peer sent (steps 140, 224, 238). */
  peerPort?: number;
  /** The STG id received or configured. */
  stg?: number;
  /** The STG length received (steps 160, 200). */
  stgLengthBytes?: number;
  /** The region id received with the STG info (steps 160, 200). */
  regionId?: string;
  /** This side's dynamic network port (step 188). */
  ownPort?: number;
}

/** A request a table row asks for; the engine gives it an id and resolves descriptor names. */
export type Request =
  | { readonly call: "socket"; readonly kind: SocketKind; readonly as: FdName }
  | { readonly call: "bind"; readonly fd: FdName; readonly address: Address }
  | { readonly call: "listen"; readonly fd: FdName }
  | { readonly call: "getsockname"; readonly fd: FdName }
  | { readonly call: "accept"; readonly fd: FdName; readonly as: FdName }
  | { readonly call: "connect"; readonly fd: FdName; readonly address: Address }
  | { readonly call: "send"; readonly fd: FdName; readonly message: Message }
  | { readonly call: "recv"; readonly fd: FdName };

/** What a table row does: requests, closes, finishing its lane, or refusing the peer's data. */
export type Effect =
  | Request
  | { readonly call: "close"; readonly fd: FdName; readonly step?: Step }
  | { readonly call: "done" }
  | {
    readonly call: "reject";
    readonly message: string;
    /** The code of the failure (default EPROTO: the peer broke the protocol). */
    readonly code?: SocketErrorCode;
    /** The step the failure names (default the row's). */
    readonly step?: Step;
  };

/** What a row reacts to: the start, a call's result, or a received message of a type. */
export type RowEvent =
  | "start"
  | "opened"
  | "bound"
  | "listening"
  | "named"
  | "accepted"
  | "connected"
  | "sent"
  | `received:${MessageType}`;

/** What a row can read while it decides. */
export interface RowContext {
  /** The machine's configuration. */
  readonly config: import("./config.ts").HandshakeConfig;
  /** The descriptor bound to a name; asserts it is known. */
  fd(name: FdName): number;
  /** Values learned so far; rows may record into it. */
  readonly learned: Learned;
}

/** One transition: in `state` of `lane`, on `on`, emit `act`'s effects and go to `next`. */
export interface Row {
  /** The seeds' step this row performs. */
  readonly step: Step;
  /** The lane (sub-flow) the row belongs to. */
  readonly lane: string;
  /** The lane state the row applies in. */
  readonly state: string;
  /** The event it reacts to. */
  readonly on: RowEvent;
  /** The lane state after it. */
  readonly next: string;
  /** The effects, computed from what the machine knows and the input. */
  readonly act: (context: RowContext, input: HandshakeInput) => readonly Effect[];
}

/** One role's protocol: its lanes, its table and the channels it establishes. */
export interface Flow {
  /** The role it is the protocol of. */
  readonly role: HandshakeRole;
  /** Its lanes, which run in parallel. */
  readonly lanes: readonly string[];
  /** Every row of every lane. */
  readonly table: readonly Row[];
  /** Channel name -> descriptor slot; every other slot must be closed at establishment. */
  readonly channels: Readonly<Record<string, FdName>>;
}

/** The state every lane starts in. */
export const IDLE = "IDLE";
/** The state of a finished lane. */
export const DONE = "DONE";
