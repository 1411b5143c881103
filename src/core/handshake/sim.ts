/**
 * A pure, seeded simulation of one host's loopback network and storage system that drives a
 * pair of handshake machines to the end: sockets, ports, listen queues, frame delivery, and a
 * fixed control-block table for storage sockets. Time is virtual; every call completes after a
 * seeded delay; faults fire at a chosen (side, step). The run is a bounded loop, and its
 * outcome carries the transcript and every rule the run broke, so a property only has to look.
 *
 * @module
 */

import { invariant } from "../assert.ts";
import { STORAGE_FD_MIN } from "../dispatch/descriptor.ts";
import type { SocketErrorCode } from "../dispatch/errors.ts";
import type { Address } from "../dispatch/sockets.ts";
import { decodeMessage, encodeMessage, type Message } from "../wire/messages.ts";
import type { HandshakeConfig } from "./config.ts";
import type {
  HandshakeAction,
  HandshakeInput,
  HandshakeMachine,
  HandshakeRole,
  SocketAction,
  Step,
} from "./types.ts";

/** The two sides of a run. */
export type Side = "server" | "client";

/** Faults the simulation can inject, each at the first call a side makes at a step. */
export const FAULT_KINDS = [
  "refuse", // the call fails with ECONNREFUSED
  "reset", // the call fails with ECONNRESET and its connection, if any, is reset both ways
  "kill", // the side dies instead of making the call: the OS closes all its sockets
  "badFrame", // the frame sent arrives as garbage bytes
  "duplicate", // the frame sent arrives twice
  "drop", // the frame sent never arrives (the send itself succeeds)
  "stall", // the call never completes
] as const;

/** One fault kind. */
export type FaultKind = typeof FAULT_KINDS[number];

/** A fault at the first call `side` makes at `step`. */
export interface Fault {
  readonly kind: FaultKind;
  readonly side: Side;
  readonly step: Step;
}

/** How a run goes. */
export interface SimOptions {
  /** Seeds the delays and, unless `choose` is given, the interleaving. */
  readonly seed: number;
  /** Each call completes 0..delayMsMax ms after it was asked for. */
  readonly delayMsMax?: number;
  readonly faults?: readonly Fault[];
  /** Picks which of `n` runnable calls goes next (default: seeded). */
  readonly choose?: (n: number) => number;
  /** Bound on loop iterations. */
  readonly stepsMax?: number;
  /** Size of the storage control-block table. */
  readonly controlBlocksMax?: number;
}

/** A pair of machines to run: the passive side is started first. */
export interface SimPair {
  readonly server: HandshakeMachine;
  readonly client: HandshakeMachine;
  /** The side that starts once the other side's well-known listeners are up. */
  readonly initiator: Side;
  /** Network ports the passive side must listen on before the initiator starts. */
  readonly passivePorts: readonly number[];
}

/** What happened to one side. */
export interface SideOutcome {
  readonly status: HandshakeMachine["status"];
  readonly dead: boolean;
  readonly reason: HandshakeMachine["reason"];
  readonly channels: HandshakeMachine["channels"];
}

/** The result of a run. */
export interface SimOutcome {
  readonly server: SideOutcome;
  readonly client: SideOutcome;
  /** Every call performed, in order: `side step call details`. */
  readonly transcript: readonly string[];
  /** Faults that fired. */
  readonly fired: readonly Fault[];
  /** Rules the run broke (leaks, mismatched channels, silent disagreement, no end). */
  readonly violations: readonly string[];
  readonly steps: number;
  readonly nowMs: number;
}

/** Default bound on loop iterations. */
export const SIM_STEPS_MAX = 4000;
/** Default size of the control-block table. */
export const SIM_CONTROL_BLOCKS_MAX = 8;
const DYNAMIC_PORT_MIN = 49152;

interface SimSocket {
  readonly owner: Side;
  fd: number;
  readonly kind: "network" | "storage";
  state: "fresh" | "bound" | "listening" | "connected" | "closed";
  port: number;
  stg: number;
  backlog: number;
  queue: SimSocket[];
  peer: SimSocket | undefined;
  inbox: Uint8Array[];
  reset: boolean;
  holdsBlock: boolean;
}

interface Op {
  readonly side: Side;
  readonly action: SocketAction;
  readonly readyAtMs: number;
  readonly fault: FaultKind | undefined;
}

/** A small seeded generator (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Describes an action in one line, for transcripts. */
export function describeAction(side: Side, action: SocketAction): string {
  const head = `${side} ${action.step} ${action.type}`;
  switch (action.type) {
    case "socket":
      return `${head} ${action.kind}`;
    case "bind":
    case "connect":
      return `${head} fd=${action.fd} ${formatAddress(action.address)}`;
    case "listen":
      return `${head} fd=${action.fd} backlog=${action.backlog}`;
    case "send":
      return `${head} fd=${action.fd} ${describeMessage(action.message)}`;
    default:
      return `${head} fd=${action.fd}`;
  }
}

function formatAddress(address: Address): string {
  return address.kind === "network"
    ? `${address.host}:${address.port}`
    : `stg${address.stg}:${address.port}`;
}

function describeMessage(message: Message): string {
  const { type, ...rest } = message;
  const fields = Object.entries(rest).map(([k, v]) =>
    `${k}=${v instanceof Uint8Array ? [...v].join(".") : String(v)}`
  );
  return [type, ...fields].join(" ");
}

class SimWorld {
  nowMs = 0;
  readonly transcript: string[] = [];
  readonly fired: Fault[] = [];
  readonly sockets: SimSocket[] = [];
  readonly ops: Op[] = [];
  readonly dead = new Set<Side>();
  readonly started = new Set<Side>();
  blocksInUse = 0;
  #nextFd: Record<Side, { network: number; storage: number }> = {
    server: { network: 3, storage: STORAGE_FD_MIN },
    client: { network: 3, storage: STORAGE_FD_MIN },
  };
  #nextPort = DYNAMIC_PORT_MIN;
  #faults: Fault[];
  #random: () => number;

  constructor(
    readonly pair: SimPair,
    readonly options: SimOptions,
  ) {
    this.#faults = [...(options.faults ?? [])];
    this.#random = seededRandom(options.seed);
  }

  machine(side: Side): HandshakeMachine {
    return side === "server" ? this.pair.server : this.pair.client;
  }

  /** Feeds an input to a side's machine and queues the calls it asks for. */
  feed(side: Side, input: HandshakeInput): void {
    if (this.dead.has(side)) return;
    const actions = this.machine(side).handle(input, this.nowMs);
    for (const action of actions) this.#queue(side, action);
  }

  #queue(side: Side, action: HandshakeAction): void {
    if (action.type === "established" || action.type === "failed") return;
    if (action.type === "close") {
      this.transcript.push(describeAction(side, action));
      this.close(side, action.fd);
      return;
    }
    const delayMs = Math.floor(this.#random() * ((this.options.delayMsMax ?? 0) + 1));
    const index = this.#faults.findIndex((f) => f.side === side && f.step === action.step);
    const fault = index < 0 ? undefined : this.#faults.splice(index, 1)[0];
    if (fault !== undefined) this.fired.push(fault);
    this.ops.push({ side, action, readyAtMs: this.nowMs + delayMs, fault: fault?.kind });
  }

  random(): number {
    return this.#random();
  }

  addFault(fault: Fault): void {
    this.#faults.push(fault);
  }

  find(side: Side, fd: number): SimSocket | undefined {
    return this.sockets.find((s) => s.owner === side && s.fd === fd && s.state !== "closed");
  }

  newSocket(side: Side, kind: "network" | "storage", withFd: boolean): SimSocket | undefined {
    if (kind === "storage") {
      if (this.blocksInUse >= (this.options.controlBlocksMax ?? SIM_CONTROL_BLOCKS_MAX)) {
        return undefined;
      }
      this.blocksInUse++;
    }
    const fd = withFd ? this.#nextFd[side][kind]++ : -1;
    const socket: SimSocket = {
      owner: side,
      fd,
      kind,
      state: "fresh",
      port: 0,
      stg: 0,
      backlog: 0,
      queue: [],
      peer: undefined,
      inbox: [],
      reset: false,
      holdsBlock: kind === "storage",
    };
    this.sockets.push(socket);
    return socket;
  }

  assignFd(socket: SimSocket): void {
    socket.fd = this.#nextFd[socket.owner][socket.kind]++;
  }

  dynamicPort(): number {
    invariant(this.#nextPort <= 65535, "the simulated dynamic range is not exhausted");
    return this.#nextPort++;
  }

  holder(kind: "network" | "storage", stg: number, port: number): SimSocket | undefined {
    return this.sockets.find((s) =>
      s.kind === kind && s.port === port && (kind === "network" || s.stg === stg) &&
      s.state !== "closed" && s.fd >= 0 && s.state !== "fresh"
    );
  }

  closeSocket(socket: SimSocket): void {
    if (socket.state === "closed") return;
    socket.state = "closed";
    if (socket.holdsBlock) {
      socket.holdsBlock = false;
      this.blocksInUse--;
    }
    for (const queued of socket.queue) this.closeSocket(queued);
    socket.queue = [];
  }

  close(side: Side, fd: number): void {
    const socket = this.find(side, fd);
    if (socket !== undefined) this.closeSocket(socket);
  }

  kill(side: Side): void {
    this.dead.add(side);
    for (const socket of this.sockets) if (socket.owner === side) this.closeSocket(socket);
  }
}

/** The outcome of one call: the input to feed back, or `undefined` while it cannot complete. */
type Completion = HandshakeInput | undefined;

const failure = (id: number, code: SocketErrorCode, message: string): HandshakeInput => ({
  type: "error",
  id,
  code,
  message,
});

function peerGone(socket: SimSocket): boolean {
  return socket.peer === undefined || socket.peer.state === "closed";
}

/** Performs a call on the world. Returns `undefined` while it has to wait. */
function perform(world: SimWorld, op: Op): Completion {
  const { side, action } = op;
  const id = action.id;
  if (op.fault === "refuse") return failure(id, "ECONNREFUSED", "injected: refused");
  if (action.type === "socket") {
    const socket = world.newSocket(side, action.kind, true);
    if (socket === undefined) return failure(id, "ENOBUFS", "no free control block");
    return { type: "opened", id, fd: socket.fd };
  }
  const socket = world.find(side, action.fd);
  if (socket === undefined) return failure(id, "EBADF", `fd ${action.fd} is not open`);
  if (op.fault === "reset") {
    socket.reset = true;
    if (socket.peer !== undefined) socket.peer.reset = true;
    return failure(id, "ECONNRESET", "injected: connection reset");
  }
  switch (action.type) {
    case "bind":
      return bind(world, socket, action.address, id);
    case "listen":
      socket.state = "listening";
      socket.backlog = action.backlog;
      return { type: "listening", id };
    case "getsockname":
      return { type: "named", id, address: addressOf(socket) };
    case "accept":
      return acceptOn(world, socket, id);
    case "connect":
      return connect(world, socket, action.address, id);
    case "send":
      return sendOn(world, socket, action.message, op);
    case "recv":
      return recvOn(socket, id);
    case "close":
      return { type: "closed", id };
  }
}

function addressOf(socket: SimSocket): Address {
  return socket.kind === "network"
    ? { kind: "network", host: "127.0.0.1", port: socket.port }
    : { kind: "storage", stg: socket.stg, port: socket.port };
}

function bind(world: SimWorld, socket: SimSocket, address: Address, id: number): Completion {
  const stg = address.kind === "storage" ? address.stg : 0;
  const port = address.port === 0 ? world.dynamicPort() : address.port;
  if (world.holder(socket.kind, stg, port) !== undefined) {
    return failure(id, "EADDRINUSE", `port ${port} is taken`);
  }
  socket.port = port;
  socket.stg = stg;
  socket.state = "bound";
  return { type: "bound", id };
}

function connect(world: SimWorld, socket: SimSocket, address: Address, id: number): Completion {
  const stg = address.kind === "storage" ? address.stg : 0;
  const listener = world.holder(socket.kind, stg, address.port);
  if (listener === undefined || listener.state !== "listening") {
    return failure(id, "ECONNREFUSED", `nobody listens on ${formatAddress(address)}`);
  }
  if (listener.queue.length >= listener.backlog) {
    return failure(id, "ECONNREFUSED", "the listen queue is full");
  }
  const end = world.newSocket(listener.owner, socket.kind, false);
  if (end === undefined) return failure(id, "ECONNREFUSED", "no control block for the peer");
  end.state = "connected";
  end.port = listener.port;
  end.stg = stg;
  end.peer = socket;
  socket.peer = end;
  socket.state = "connected";
  listener.queue.push(end);
  return { type: "connected", id };
}

function acceptOn(world: SimWorld, listener: SimSocket, id: number): Completion {
  if (listener.state !== "listening") return failure(id, "EINVAL", "accept on a non-listener");
  const end = listener.queue.shift();
  if (end === undefined) return undefined;
  world.assignFd(end);
  return { type: "accepted", id, fd: end.fd };
}

function sendOn(world: SimWorld, socket: SimSocket, message: Message, op: Op): Completion {
  const id = op.action.id;
  if (socket.reset) return failure(id, "ECONNRESET", "connection reset");
  if (socket.state !== "connected") return failure(id, "ENOTCONN", "send on an unconnected fd");
  if (peerGone(socket)) return failure(id, "EPIPE", "the peer closed the connection");
  const payload = encodeMessage(message);
  const peer = socket.peer!;
  if (op.fault === "badFrame") {
    peer.inbox.push(Uint8Array.from(payload, () => Math.floor(world.random() * 256)));
  } else if (op.fault !== "drop") {
    peer.inbox.push(payload);
    if (op.fault === "duplicate") peer.inbox.push(payload);
  }
  return { type: "sent", id };
}

function recvOn(socket: SimSocket, id: number): Completion {
  if (socket.reset) return failure(id, "ECONNRESET", "connection reset");
  const payload = socket.inbox.shift();
  if (payload !== undefined) {
    const decoded = decodeMessage(payload);
    return decoded.ok
      ? { type: "received", id, message: decoded.value }
      : failure(id, decoded.code, decoded.message);
  }
  if (peerGone(socket)) return { type: "peerClosed", id };
  return undefined;
}

/** Runs one op if it can complete; returns whether it did. */
function step(world: SimWorld, op: Op): boolean {
  if (world.dead.has(op.side)) return true;
  if (op.fault === "kill") {
    world.transcript.push(`${op.side} ${op.action.step} killed`);
    world.kill(op.side);
    return true;
  }
  if (op.fault === "stall") return false;
  const completion = perform(world, op);
  if (completion === undefined) return false;
  world.transcript.push(describeAction(op.side, op.action));
  world.feed(op.side, completion);
  return true;
}

/** Whether a call could complete now (a waiting accept or recv cannot). */
function canComplete(world: SimWorld, op: Op): boolean {
  if (op.fault === "stall") return false;
  const immediate = op.fault === "refuse" || op.fault === "reset" || op.fault === "kill";
  if (immediate || op.action.type === "socket") return true;
  const socket = world.find(op.side, op.action.fd);
  if (socket === undefined) return true;
  if (op.action.type === "accept") return socket.state !== "listening" || socket.queue.length > 0;
  if (op.action.type === "recv") {
    return socket.reset || socket.inbox.length > 0 || peerGone(socket);
  }
  return true;
}

const other = (side: Side): Side => side === "server" ? "client" : "server";

function maybeStartInitiator(world: SimWorld): void {
  const initiator = world.pair.initiator;
  if (world.started.has(initiator)) return;
  const passive = world.machine(other(initiator));
  const listening = world.pair.passivePorts.every((port) =>
    world.holder("network", 0, port)?.state === "listening"
  );
  const passiveEnded = passive.status === "failed" || world.dead.has(other(initiator));
  if (!listening && !passiveEnded) return;
  world.started.add(initiator);
  world.feed(initiator, { type: "start" });
}

function nextTimeMs(world: SimWorld): number | undefined {
  let next: number | undefined;
  const consider = (t: number | undefined) => {
    if (t !== undefined && t > world.nowMs && (next === undefined || t < next)) next = t;
  };
  for (const op of world.ops) if (!world.dead.has(op.side)) consider(op.readyAtMs);
  for (const side of ["server", "client"] as const) {
    const machine = world.machine(side);
    if (!world.dead.has(side) && machine.status === "handshaking") consider(machine.deadlineMs);
  }
  return next;
}

function advanceClock(world: SimWorld, toMs: number): void {
  world.nowMs = toMs;
  for (const side of ["server", "client"] as const) {
    const deadlineMs = world.machine(side).deadlineMs;
    if (deadlineMs !== undefined && deadlineMs <= toMs) world.feed(side, { type: "tick" });
  }
}

/** A simulation in progress, stepped by its caller (see {@link createSimulation}). */
export interface Simulation {
  /**
   * Moves the clock until some call can complete; returns their keys, or `undefined` once the
   * run has ended (both sides done and nothing left to do) or hit `stepsMax`.
   */
  poll(): readonly string[] | undefined;
  /** Completes the call with this key (one of the keys `poll` returned last). */
  run(key: string): void;
  /** Kills a side now: the OS closes all its sockets; its machine is fed no more. */
  kill(side: Side): void;
  /** Adds a fault that fires at the next call `fault.side` makes at `fault.step`. */
  inject(fault: Fault): void;
  /** The descriptors a side holds open on the simulated host. */
  openDescriptors(side: Side): number[];
  /** The machine of a side. */
  machine(side: Side): HandshakeMachine;
  /** Whether a side was killed. */
  isDead(side: Side): boolean;
  /** Checks the end rules, tears the channels down and reports. Call once, at the end. */
  finish(): SimOutcome;
}

const opKey = (op: Op): string => `${op.side}#${op.action.id}`;

class SimulationRun implements Simulation {
  #world: SimWorld;
  #steps = 0;
  #stepsMax: number;

  constructor(pair: SimPair, options: SimOptions) {
    this.#world = new SimWorld(pair, options);
    this.#stepsMax = options.stepsMax ?? SIM_STEPS_MAX;
    const passive = other(pair.initiator);
    this.#world.started.add(passive);
    this.#world.feed(passive, { type: "start" });
  }

  poll(): readonly string[] | undefined {
    const world = this.#world;
    // Bounded: each pass either returns or moves the clock, and counts as a step.
    while (this.#steps < this.#stepsMax) {
      maybeStartInitiator(world);
      for (let i = world.ops.length - 1; i >= 0; i--) {
        if (world.dead.has(world.ops[i]!.side)) world.ops.splice(i, 1);
      }
      const runnable = world.ops.filter((op) =>
        op.readyAtMs <= world.nowMs && canComplete(world, op)
      );
      if (runnable.length > 0) return runnable.map(opKey);
      const next = nextTimeMs(world);
      if (next === undefined) return undefined;
      advanceClock(world, next);
      this.#steps++;
    }
    return undefined;
  }

  run(key: string): void {
    const world = this.#world;
    const op = world.ops.find((o) => opKey(o) === key);
    invariant(op !== undefined && canComplete(world, op), `call ${key} can complete`);
    world.ops.splice(world.ops.indexOf(op), 1);
    const completed = step(world, op);
    invariant(completed, `a runnable call completes: ${key}`);
    this.#steps++;
  }

  kill(side: Side): void {
    this.#world.transcript.push(`${side} - killed`);
    this.#world.kill(side);
  }

  inject(fault: Fault): void {
    this.#world.addFault(fault);
  }

  openDescriptors(side: Side): number[] {
    return openFds(this.#world, side);
  }

  machine(side: Side): HandshakeMachine {
    return this.#world.machine(side);
  }

  isDead(side: Side): boolean {
    return this.#world.dead.has(side);
  }

  finish(): SimOutcome {
    const world = this.#world;
    const exhausted = this.#steps >= this.#stepsMax;
    const violations = exhausted ? [`the run did not end within ${this.#stepsMax} steps`] : [];
    violations.push(...checkEnd(world));
    return {
      server: sideOutcome(world, "server"),
      client: sideOutcome(world, "client"),
      transcript: world.transcript,
      fired: world.fired,
      violations,
      steps: this.#steps,
      nowMs: world.nowMs,
    };
  }
}

/**
 * Starts a simulation that its caller steps: `poll` for the calls that can complete, `run` the
 * one it picks (this is how `fc.scheduler` and `fc.commands` drive it), `finish` at the end.
 *
 * @param pair the machines, which side initiates, and the ports the passive side listens on
 * @param options seed, delays, faults, bounds (`choose` is not used here)
 * @returns the simulation, with the passive side already started
 */
export function createSimulation(pair: SimPair, options: SimOptions): Simulation {
  return new SimulationRun(pair, options);
}

/**
 * Runs a pair of machines on a fresh simulated host until both have ended (or died), at most
 * `stepsMax` steps.
 *
 * @param pair the machines, which side initiates, and the ports the passive side listens on
 * @param options seed, delays, faults, interleaving, bounds
 * @returns the outcome: each side's end, the transcript, the faults fired, the rules broken
 *
 * @example A clean file-system handshake on the simulated host
 * ```ts
 * import assert from "node:assert/strict";
 * import { runSimulation, simPair } from "./sim.ts";
 * import { createHandshake } from "./mod.ts";
 * const pair = simPair("fs", createHandshake, { wellKnownPort: 7000 });
 * const outcome = runSimulation(pair, { seed: 1, delayMsMax: 5 });
 * assert.deepEqual(outcome.violations, []);
 * assert.equal(outcome.server.status, "established");
 * assert.equal(outcome.client.status, "established");
 * ```
 */
export function runSimulation(pair: SimPair, options: SimOptions): SimOutcome {
  const simulation = createSimulation(pair, options);
  const random = seededRandom(options.seed ^ 0x5bd1e995);
  const choose = options.choose ?? ((n: number) => Math.floor(random() * n));
  // Bounded by stepsMax inside poll and run.
  for (let keys = simulation.poll(); keys !== undefined; keys = simulation.poll()) {
    const pick = choose(keys.length);
    invariant(Number.isInteger(pick) && pick >= 0 && pick < keys.length, "choice in range");
    simulation.run(keys[pick]!);
  }
  return simulation.finish();
}

function sideOutcome(world: SimWorld, side: Side): SideOutcome {
  const m = world.machine(side);
  return { status: m.status, dead: world.dead.has(side), reason: m.reason, channels: m.channels };
}

function openFds(world: SimWorld, side: Side): number[] {
  return world.sockets
    .filter((s) => s.owner === side && s.fd >= 0 && s.state !== "closed")
    .map((s) => s.fd)
    .sort((a, b) => a - b);
}

/** The rules every run must keep, checked at its end; tears the channels down last. */
function checkEnd(world: SimWorld): string[] {
  const broken: string[] = [];
  for (const side of ["server", "client"] as const) {
    const m = world.machine(side);
    if (world.dead.has(side)) continue;
    if (m.status === "failed" && m.reason === undefined) {
      broken.push(`${side} failed without reason`);
    }
    if (m.status !== "failed" && m.status !== "established") {
      broken.push(`${side} ended ${m.status}, not established or failed`);
    }
    const kept = Object.values(m.channels ?? {}).sort((a, b) => a - b).join(",");
    const open = openFds(world, side).join(",");
    if (open !== kept) broken.push(`${side} leaks descriptors: open [${open}], kept [${kept}]`);
  }
  broken.push(...checkChannels(world));
  for (const side of ["server", "client"] as const) {
    for (const fd of Object.values(world.machine(side).channels ?? {})) world.close(side, fd);
  }
  const left = world.sockets.filter((s) => s.state !== "closed").length;
  if (left > 0) broken.push(`${left} sockets stay open after teardown`);
  if (world.blocksInUse !== 0) broken.push(`${world.blocksInUse} control blocks leaked`);
  return broken;
}

function checkChannels(world: SimWorld): string[] {
  const server = world.machine("server");
  const client = world.machine("client");
  const established = (side: Side) =>
    !world.dead.has(side) && world.machine(side).status === "established";
  if (established("server") && established("client")) {
    const names = Object.keys(server.channels!).sort().join(",");
    if (names !== Object.keys(client.channels!).sort().join(",")) {
      return [`channel names differ: ${names}`];
    }
    return Object.entries(server.channels!).flatMap(([name, fd]) => {
      const mine = world.find("server", fd);
      const theirs = world.find("client", client.channels![name]!);
      return mine !== undefined && mine.peer === theirs ? [] : [`channel ${name} is not paired`];
    });
  }
  for (const side of ["server", "client"] as const) {
    if (!established(side)) continue;
    for (const [name, fd] of Object.entries(world.machine(side).channels!)) {
      const socket = world.find(side, fd);
      if (socket !== undefined && !socket.reset && !peerGone(socket)) {
        return [`${side} is established but its ${name} channel does not show the peer's end`];
      }
    }
  }
  return [];
}

/** The flows a pair can run. */
export type SimFlow = "fs" | "db";

/** The id of the region both simulated sides attached. */
export const SIM_REGION_ID = "5e1f0000-0000-4000-8000-00000000c0de";

/**
 * Builds a pair of machines for a flow, configured for one simulated host.
 *
 * @param flow `fs` (the server initiates) or `db` (the client initiates)
 * @param factory builds a machine for a role (the implementation under test)
 * @param overrides configuration fields common to both sides (`wellKnownPort` at least)
 * @returns the pair, with the passive side's well-known ports
 */
export function simPair(
  flow: SimFlow,
  factory: (role: HandshakeRole, config: HandshakeConfig) => HandshakeMachine,
  overrides: Partial<HandshakeConfig> & { wellKnownPort: number },
): SimPair {
  const config: HandshakeConfig = {
    localHost: "127.0.0.1",
    peerHost: "127.0.0.1",
    connectorBindPort: 0,
    expectedConnections: 2,
    handshakeTimeoutMs: 5000,
    backlog: 4,
    stg: { id: 1, lengthBytes: 1 << 20, regionId: SIM_REGION_ID },
    region: { regionId: SIM_REGION_ID, stgs: [{ id: 1, lengthBytes: 1 << 20 }] },
    ...overrides,
  };
  const wkp = config.wellKnownPort;
  return flow === "fs"
    ? {
      server: factory("fs-server", config),
      client: factory("fs-client", config),
      initiator: "server",
      passivePorts: [wkp, wkp + 1],
    }
    : {
      server: factory("db-server", config),
      client: factory("db-client", config),
      initiator: "client",
      passivePorts: [wkp],
    };
}

/** One line of a golden transcript. */
export interface TranscriptLine {
  /** The seeds' step number (or lanfree's label, see the flow tables). */
  readonly step: Step;
  readonly side: Side;
  /** The call and its arguments. */
  readonly call: string;
}

/** The well-known port golden runs use. */
export const GOLDEN_WELL_KNOWN_PORT = 7000;

/**
 * The ordered calls of a successful run of a flow: no delays, calls run in the order they were
 * asked for. This is what `fixtures/handshake-<flow>.golden.json` holds.
 *
 * @param flow `fs` or `db`
 * @param factory the implementation under test
 * @returns the transcript, one line per call
 *
 * @example The database flow starts with the server's WKP listener
 * ```ts
 * import assert from "node:assert/strict";
 * import { goldenTranscript } from "./sim.ts";
 * import { createHandshake } from "./mod.ts";
 * const [first] = goldenTranscript("db", createHandshake);
 * assert.deepEqual(first, { step: "222-socket", side: "server", call: "socket network" });
 * ```
 */
export function goldenTranscript(
  flow: SimFlow,
  factory: (role: HandshakeRole, config: HandshakeConfig) => HandshakeMachine,
): TranscriptLine[] {
  const pair = simPair(flow, factory, { wellKnownPort: GOLDEN_WELL_KNOWN_PORT });
  const outcome = runSimulation(pair, { seed: 0, delayMsMax: 0, choose: () => 0 });
  invariant(outcome.violations.length === 0, `golden run is clean: ${outcome.violations}`);
  return outcome.transcript.map((line) => {
    const [side, step, ...call] = line.split(" ");
    invariant(side === "server" || side === "client", "transcript lines start with a side");
    return { step: step ?? "", side, call: call.join(" ") };
  });
}
