/**
 * The engine that runs a handshake table: request ids, descriptor bookkeeping, the deadline,
 * and the failure rule. The protocol itself lives in the tables (`fs_flow.ts`, `db_flow.ts`).
 *
 * Failure rule: on any failure the machine (1) best-effort sends an `error` message on every
 * connected network descriptor, (2) closes every descriptor it holds, network and storage,
 * (3) emits `failed` with a reason, and stays failed. A socket or accept still in flight when it
 * fails is closed as soon as its descriptor comes back.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import { kindOfDescriptor, type SocketKind } from "../dispatch/descriptor.ts";
import type { SocketErrorCode } from "../dispatch/errors.ts";
import { errorMessage } from "../wire/messages.ts";
import type { HandshakeConfig } from "./config.ts";
import {
  type Channels,
  DONE,
  type Effect,
  type FailureOrigin,
  type FailureReason,
  type FdName,
  type Flow,
  type HandshakeAction,
  type HandshakeInput,
  type HandshakeMachine,
  type HandshakeStatus,
  IDLE,
  type Learned,
  type Request,
  type ResultInput,
  type Row,
  type RowContext,
  type RowEvent,
  type SocketAction,
} from "./types.ts";

/** Codes that mean the peer or the network did it; every other code is local. */
const REMOTE_CODES: ReadonlySet<SocketErrorCode> = new Set<SocketErrorCode>([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "EPROTO",
  "EMSGSIZE",
  "ENOTCONN",
]);

/** The input type each request's success produces. */
const SUCCESS_OF: Readonly<Record<Request["call"], readonly ResultInput["type"][]>> = {
  socket: ["opened"],
  bind: ["bound"],
  listen: ["listening"],
  getsockname: ["named"],
  accept: ["accepted"],
  connect: ["connected"],
  send: ["sent"],
  recv: ["received", "peerClosed"],
};

interface Pending {
  readonly id: number;
  readonly request: Request;
  readonly step: string;
}

interface OpenDescriptor {
  readonly name: FdName;
  readonly kind: SocketKind;
  connected: boolean;
}

/** Rows indexed by lane, state and event. */
function indexTable(flow: Flow): ReadonlyMap<string, Row> {
  const index = new Map<string, Row>();
  for (const row of flow.table) {
    const key = `${row.lane}|${row.state}|${row.on}`;
    invariant(!index.has(key), `${flow.role}: one row per (lane, state, event): ${key}`);
    invariant(flow.lanes.includes(row.lane), `${flow.role}: row lane ${row.lane} is declared`);
    index.set(key, row);
  }
  return index;
}

class TableMachine implements HandshakeMachine {
  readonly role: Flow["role"];
  #flow: Flow;
  #config: HandshakeConfig;
  #rows: ReadonlyMap<string, Row>;
  #status: HandshakeStatus = "idle";
  #lanes = new Map<string, string>();
  #pending = new Map<string, Pending>();
  #fds = new Map<FdName, number>();
  #open = new Map<number, OpenDescriptor>();
  #ignored = new Set<number>();
  #orphans = new Map<number, Pending>();
  #learned: Learned = {};
  #nextId = 1;
  #lastNowMs = -Infinity;
  #deadlineMs: number | undefined;
  #reason: FailureReason | undefined;
  #channels: Channels | undefined;

  constructor(flow: Flow, config: HandshakeConfig) {
    this.role = flow.role;
    this.#flow = flow;
    this.#config = config;
    this.#rows = indexTable(flow);
    for (const lane of flow.lanes) this.#lanes.set(lane, IDLE);
  }

  get status(): HandshakeStatus {
    return this.#status;
  }
  get laneStates(): Readonly<Record<string, string>> {
    return Object.fromEntries(this.#lanes);
  }
  get deadlineMs(): number | undefined {
    return this.#deadlineMs;
  }
  get reason(): FailureReason | undefined {
    return this.#reason;
  }
  get channels(): Channels | undefined {
    return this.#channels;
  }
  get openDescriptors(): readonly number[] {
    return [...this.#open.keys()];
  }

  handle(input: HandshakeInput, nowMs: number): HandshakeAction[] {
    invariant(Number.isFinite(nowMs), "nowMs is a finite number");
    invariant(nowMs >= this.#lastNowMs, "nowMs never goes backwards");
    this.#lastNowMs = nowMs;
    const actions: HandshakeAction[] = [];
    const late = this.#deadlineMs !== undefined && nowMs >= this.#deadlineMs;
    if (this.#status === "handshaking" && late) {
      actions.push(...this.#fail("local", "ETIMEDOUT", this.#currentStep(), timeoutText(this)));
    }
    if (this.#status === "failed" || this.#status === "established") {
      actions.push(...this.#afterEnd(input));
    } else if (input.type === "start") {
      actions.push(...this.#start(nowMs));
    } else if (input.type !== "tick") {
      actions.push(...this.#result(input));
    }
    return actions;
  }

  #start(nowMs: number): HandshakeAction[] {
    if (this.#status !== "idle") {
      return this.#fail("local", "EINVAL", this.#currentStep(), "start given twice");
    }
    this.#status = "handshaking";
    this.#deadlineMs = nowMs + this.#config.handshakeTimeoutMs;
    const actions: HandshakeAction[] = [];
    for (const lane of this.#flow.lanes) {
      actions.push(...this.#apply(this.#row(lane, IDLE, "start"), { type: "start" }));
      if (this.#status !== "handshaking") break;
    }
    return actions;
  }

  /** Inputs after the end: close descriptors that arrive late; ignore the rest. */
  #afterEnd(input: HandshakeInput): HandshakeAction[] {
    if (input.type === "start" || input.type === "tick") return [];
    const orphan = this.#orphans.get(input.id);
    if (orphan === undefined) return [];
    this.#orphans.delete(input.id);
    if (input.type !== "opened" && input.type !== "accepted") return [];
    const id = this.#nextId++;
    this.#ignored.add(id);
    return [{ type: "close", id, step: orphan.step, fd: input.fd }];
  }

  #result(input: ResultInput): HandshakeAction[] {
    if (this.#status === "idle") {
      return this.#fail("local", "EINVAL", IDLE, `${input.type} (id ${input.id}) before start`);
    }
    const found = [...this.#pending.entries()].find(([, p]) => p.id === input.id);
    if (found === undefined) {
      if (this.#ignored.delete(input.id)) return [];
      return this.#fail("local", "EINVAL", this.#currentStep(), `no request ${input.id} pending`);
    }
    const [lane, pending] = found;
    this.#pending.delete(lane);
    if (input.type === "error") {
      const origin: FailureOrigin = REMOTE_CODES.has(input.code) ? "remote" : "local";
      const text = `${pending.request.call} failed: ${input.message}`;
      return this.#fail(origin, input.code, pending.step, text);
    }
    if (!SUCCESS_OF[pending.request.call].includes(input.type)) {
      const text = `${input.type} does not answer ${pending.request.call} (id ${input.id})`;
      return this.#fail("local", "EINVAL", pending.step, text);
    }
    return this.#success(lane, pending, input);
  }

  #success(lane: string, pending: Pending, input: ResultInput): HandshakeAction[] {
    const request = pending.request;
    if (input.type === "opened" || input.type === "accepted") {
      invariant(request.call === "socket" || request.call === "accept", "fd comes from open");
      const kind = request.call === "socket" ? request.kind : this.#open.get(this.#fd(request.fd))
        ?.kind;
      this.#fds.set(request.as, input.fd);
      this.#open.set(input.fd, { name: request.as, kind: kind ?? "network", connected: false });
      if (kindOfDescriptor(input.fd) !== kind) {
        const text = `descriptor ${input.fd} is not a ${kind} descriptor`;
        return this.#fail("local", "EINVAL", pending.step, text);
      }
    }
    const opened = this.#open.get(this.#fds.get(requestFd(request)) ?? -1);
    if (input.type === "connected" && opened) opened.connected = true;
    if (input.type === "accepted") this.#open.get(input.fd)!.connected = true;
    if (input.type === "peerClosed") {
      const text = `the peer closed the connection while step ${pending.step} waited for a message`;
      return this.#fail("remote", "ECONNRESET", pending.step, text);
    }
    if (input.type === "received" && input.message.type === "error") {
      const text = `the peer reported ${input.message.code}: ${input.message.text}`;
      return this.#fail("remote", input.message.code, pending.step, text);
    }
    return this.#advance(lane, pending, input);
  }

  #advance(lane: string, pending: Pending, input: ResultInput): HandshakeAction[] {
    const state = this.#lanes.get(lane)!;
    const event: RowEvent = input.type === "received"
      ? `received:${input.message.type}`
      : input.type as RowEvent;
    const row = this.#rows.get(`${lane}|${state}|${event}`);
    if (row === undefined) {
      invariant(input.type === "received", `${this.role}: table covers ${event} in ${state}`);
      const expected = this.#flow.table
        .filter((r) => r.lane === lane && r.state === state)
        .map((r) => r.on.replace("received:", ""));
      const text = `unexpected ${input.message.type} message at step ${pending.step} ` +
        `(state ${state}); expected ${expected.join(" or ")}`;
      return this.#fail("remote", "EPROTO", pending.step, text);
    }
    return this.#apply(row, input);
  }

  #row(lane: string, state: string, event: RowEvent): Row {
    const row = this.#rows.get(`${lane}|${state}|${event}`);
    invariant(row !== undefined, `${this.role}: a row for ${event} in ${lane}/${state}`);
    return row;
  }

  #apply(row: Row, input: HandshakeInput): HandshakeAction[] {
    const context: RowContext = {
      config: this.#config,
      fd: (name) => this.#fd(name),
      learned: this.#learned,
    };
    const effects = row.act(context, input);
    const rejected = effects.find((e) => e.call === "reject");
    if (rejected !== undefined && rejected.call === "reject") {
      const code = rejected.code ?? "EPROTO";
      return this.#fail("remote", code, rejected.step ?? row.step, rejected.message);
    }
    checkRowShape(row, effects);
    this.#lanes.set(row.lane, row.next);
    const actions: HandshakeAction[] = [];
    for (const effect of effects) {
      if (effect.call === "close") actions.push(this.#close(effect.fd, effect.step ?? row.step));
      else if (effect.call !== "done" && effect.call !== "reject") {
        actions.push(this.#request(row.lane, effect, row.step));
      }
    }
    if ([...this.#lanes.values()].every((s) => s === DONE)) actions.push(this.#establish());
    return actions;
  }

  #request(lane: string, request: Request, step: string): SocketAction {
    invariant(!this.#pending.has(lane), `lane ${lane} has one request in flight`);
    const id = this.#nextId++;
    this.#pending.set(lane, { id, request, step });
    return toAction(request, id, step, (name) => this.#fd(name), this.#config.backlog);
  }

  #close(name: FdName, step: string): SocketAction {
    const fd = this.#fd(name);
    this.#open.delete(fd);
    this.#fds.delete(name);
    const id = this.#nextId++;
    this.#ignored.add(id);
    return { type: "close", id, step, fd };
  }

  #establish(): HandshakeAction {
    invariant(this.#pending.size === 0, "nothing in flight at establishment");
    const channels: Record<string, number> = {};
    for (const [channel, name] of Object.entries(this.#flow.channels)) {
      channels[channel] = this.#fd(name);
    }
    const kept = Object.values(channels).sort((a, b) => a - b).join(",");
    const open = [...this.#open.keys()].sort((a, b) => a - b).join(",");
    invariant(kept === open, `${this.role}: only channels stay open (${open} vs ${kept})`);
    this.#status = "established";
    this.#channels = channels;
    return { type: "established", channels };
  }

  #fail(origin: FailureOrigin, code: SocketErrorCode, step: string, message: string) {
    invariant(this.#status !== "failed", "a machine fails once");
    const actions: HandshakeAction[] = [];
    const report = errorMessage(code, message);
    for (const [fd, open] of this.#open) {
      if (open.kind !== "network" || !open.connected || code === "ECONNRESET") continue;
      const id = this.#nextId++;
      this.#ignored.add(id);
      actions.push({ type: "send", id, step: "fail", fd, message: report });
    }
    for (const name of [...this.#fds.keys()]) actions.push(this.#close(name, "fail"));
    for (const pending of this.#pending.values()) this.#orphans.set(pending.id, pending);
    this.#pending.clear();
    this.#status = "failed";
    this.#reason = { origin, code, step, message };
    actions.push({ type: "failed", reason: this.#reason });
    invariant(this.#open.size === 0, "a failed machine holds no descriptor");
    return actions;
  }

  #fd(name: FdName): number {
    const fd = this.#fds.get(name);
    invariant(fd !== undefined, `${this.role}: descriptor ${name} is known when used`);
    return fd;
  }

  #currentStep(): string {
    const first = [...this.#pending.values()][0];
    return first?.step ?? [...this.#lanes.values()].join("+");
  }
}

function timeoutText(machine: TableMachine): string {
  const lanes = Object.entries(machine.laneStates).map(([l, s]) => `${l}=${s}`).join(", ");
  return `handshake deadline ${machine.deadlineMs} ms passed (${lanes})`;
}

function requestFd(request: Request): FdName {
  return request.call === "socket" ? request.as : request.fd;
}

/** A row asks for at most one request, placed last, or finishes its lane. */
function checkRowShape(row: Row, effects: readonly Effect[]): void {
  const requests = effects.filter((e) => e.call !== "close" && e.call !== "done");
  const done = effects.some((e) => e.call === "done");
  invariant(requests.length + (done ? 1 : 0) === 1, `row ${row.step}: one request or done`);
  invariant(done === (row.next === DONE), `row ${row.step}: done exactly when next is DONE`);
  const last = effects[effects.length - 1];
  invariant(last !== undefined && last.call !== "close", `row ${row.step}: closes come first`);
}

function toAction(
  request: Request,
  id: number,
  step: string,
  fd: (name: FdName) => number,
  backlog: number,
): SocketAction {
  switch (request.call) {
    case "socket":
      return { type: "socket", id, step, kind: request.kind };
    case "bind":
      return { type: "bind", id, step, fd: fd(request.fd), address: request.address };
    case "listen":
      return { type: "listen", id, step, fd: fd(request.fd), backlog };
    case "getsockname":
      return { type: "getsockname", id, step, fd: fd(request.fd) };
    case "accept":
      return { type: "accept", id, step, fd: fd(request.fd) };
    case "connect":
      return { type: "connect", id, step, fd: fd(request.fd), address: request.address };
    case "send":
      return { type: "send", id, step, fd: fd(request.fd), message: request.message };
    case "recv":
      return { type: "recv", id, step, fd: fd(request.fd) };
  }
}

/**
 * Builds a machine that runs `flow`'s table under `config`.
 *
 * @param flow the role's table (see `fs_flow.ts`, `db_flow.ts`)
 * @param config the validated configuration
 * @returns a fresh machine in status `idle`
 */
export function createTableMachine(flow: Flow, config: HandshakeConfig): HandshakeMachine {
  return new TableMachine(flow, config);
}
