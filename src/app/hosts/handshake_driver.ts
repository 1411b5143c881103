/**
 * Pumps a pure handshake machine over a real `Sockets`: performs each action as one socket call
 * (frames for messages), feeds each call's result back as an input, and ticks the machine at its
 * deadline. It makes no protocol decision: what to call next, and whether a result is good, is
 * the machine's.
 *
 * @module
 */

import { type Result, SocketError } from "../../core/dispatch/errors.ts";
import type { AttachedRegion, StgInfo } from "../../core/handshake/config.ts";
import type { Sockets } from "../../core/dispatch/sockets.ts";
import { readFrame, writeFrame } from "../../core/wire/frame.ts";
import { decodeMessage, encodeMessage } from "../../core/wire/messages.ts";
import type {
  Channels,
  FailureReason,
  HandshakeInput,
  HandshakeMachine,
  HandshakeRole,
  SocketAction,
} from "../../core/handshake/types.ts";

/** How a driven handshake ended. */
export type HandshakeOutcome =
  | { readonly status: "established"; readonly channels: Channels; readonly setupMs: number }
  | { readonly status: "failed"; readonly reason: FailureReason; readonly setupMs: number };

/** Options of {@link driveHandshake}. */
export interface DriveOptions {
  /** The clock, ms (default `performance.now`). */
  readonly nowMs?: () => number;
  /** Largest number of inputs fed before the driver gives up (default 10 000). */
  readonly inputsMax?: number;
  /** Largest control frame (default the frame module's). */
  readonly frameBytesMax?: number;
  /** Called after every input the machine handled (for readiness and progress reports). */
  readonly onStep?: (machine: HandshakeMachine) => void;
  /**
   * Gives up: the machine's clock jumps past its deadline, so it fails with ETIMEDOUT at the
   * step it is in and closes what it holds, by its own failure rule (time is an input).
   */
  readonly signal?: AbortSignal;
}

/**
 * True once every lane of a listening-side machine is past binding its listener, so a peer's
 * connect will be queued rather than refused (bind reserves the port and queues connections).
 *
 * @param machine a file-system client or database server machine
 */
export function readyToAccept(machine: HandshakeMachine): boolean {
  return Object.values(machine.laneStates).every((state) =>
    state !== "IDLE" && !state.endsWith("_OPENING") && !state.endsWith("_BINDING")
  );
}

/** Performs one action and returns the input that reports its result. */
async function perform(
  sockets: Sockets,
  action: SocketAction,
  frameBytesMax?: number,
): Promise<HandshakeInput> {
  const id = action.id;
  try {
    switch (action.type) {
      case "socket":
        return { type: "opened", id, fd: await sockets.socket(action.kind) };
      case "bind":
        await sockets.bind(action.fd, action.address);
        return { type: "bound", id };
      case "listen":
        await sockets.listen(action.fd, action.backlog);
        return { type: "listening", id };
      case "getsockname":
        return { type: "named", id, address: await sockets.getsockname(action.fd) };
      case "accept":
        return { type: "accepted", id, fd: await sockets.accept(action.fd) };
      case "connect":
        await sockets.connect(action.fd, action.address);
        return { type: "connected", id };
      case "send":
        await writeFrame(sockets, action.fd, encodeMessage(action.message), frameBytesMax);
        return { type: "sent", id };
      case "recv": {
        const payload = await readFrame(sockets, action.fd, frameBytesMax);
        if (payload === null) return { type: "peerClosed", id };
        const message = decodeMessage(payload);
        return message.ok
          ? { type: "received", id, message: message.value }
          : { type: "error", id, code: message.code, message: message.message };
      }
      case "close":
        await sockets.close(action.fd);
        return { type: "closed", id };
    }
  } catch (error) {
    if (error instanceof SocketError) {
      return { type: "error", id, code: error.code, message: error.message };
    }
    return {
      type: "error",
      id,
      code: "EINVAL",
      message: error instanceof Error ? error.message : String(error),
    };
  }
}

/**
 * Runs a handshake to its end.
 *
 * @param machine a fresh machine (from `createHandshake`)
 * @param sockets the router over network and storage sockets
 * @param options clock and bounds
 * @returns established with the channel map, or failed with the machine's reason; in both cases
 *   every call the driver started has settled and every descriptor the machine gave up is closed
 *
 * @example
 * ```ts ignore
 * const outcome = await driveHandshake(createHandshake("fs-client", config), sockets);
 * if (outcome.status === "established") console.log(outcome.channels.data);
 * ```
 */
export async function driveHandshake(
  machine: HandshakeMachine,
  sockets: Sockets,
  options: DriveOptions = {},
): Promise<HandshakeOutcome> {
  const clock = options.nowMs ?? (() => performance.now());
  const nowMs = () => options.signal?.aborted ? Number.MAX_SAFE_INTEGER : clock();
  const startedMs = clock();
  const inputs: HandshakeInput[] = [];
  let wake: (() => void) | undefined;
  const push = (input: HandshakeInput) => {
    inputs.push(input);
    wake?.();
  };
  let inFlight = 0; // calls started and not yet reported (counted down with their report)
  let outcome: HandshakeOutcome | undefined;
  const act = (actions: ReturnType<HandshakeMachine["handle"]>) => {
    for (const action of actions) {
      if (action.type === "established") {
        outcome ??= {
          status: "established",
          channels: action.channels,
          setupMs: clock() - startedMs,
        };
      } else if (action.type === "failed") {
        outcome ??= { status: "failed", reason: action.reason, setupMs: clock() - startedMs };
      } else {
        inFlight++;
        perform(sockets, action, options.frameBytesMax).then((input) => {
          inFlight--;
          push(input);
        });
      }
    }
  };
  act(machine.handle({ type: "start" }, nowMs()));
  const onAbort = () => wake?.();
  options.signal?.addEventListener("abort", onAbort);
  try {
    return await pump(machine, options, inputs, {
      nowMs,
      act,
      outcome: () => outcome,
      inFlight: () => inFlight,
      onWake: (resolve) => (wake = resolve),
    });
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/** The driver's loop: feeds inputs (or a tick at the deadline) until the end. */
async function pump(
  machine: HandshakeMachine,
  options: DriveOptions,
  inputs: HandshakeInput[],
  state: {
    nowMs: () => number;
    act: (actions: ReturnType<HandshakeMachine["handle"]>) => void;
    outcome: () => HandshakeOutcome | undefined;
    inFlight: () => number;
    onWake: (resolve: (() => void) | undefined) => void;
  },
): Promise<HandshakeOutcome> {
  const inputsMax = options.inputsMax ?? 10_000;
  const { nowMs, act } = state;
  // Bounded by inputsMax; after the end, late results are still fed so the machine closes them.
  for (let fed = 0; fed < inputsMax; fed++) {
    if (inputs.length === 0) {
      const outcome = state.outcome();
      if (outcome !== undefined && state.inFlight() === 0) return outcome;
      await waitForInput(machine, nowMs, state.onWake, state.inFlight());
      state.onWake(undefined);
    }
    const input = inputs.shift() ?? { type: "tick" as const };
    act(machine.handle(input, nowMs()));
    options.onStep?.(machine);
  }
  throw new Error(`handshake driver fed ${inputsMax} inputs without an end (${machine.role})`);
}

/** Waits for the next input, or until the machine's deadline (then the caller ticks). */
async function waitForInput(
  machine: HandshakeMachine,
  nowMs: () => number,
  onWake: (resolve: (() => void) | undefined) => void,
  inFlight: number,
): Promise<void> {
  const deadline = machine.status === "handshaking" ? machine.deadlineMs : undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await new Promise<void>((resolve) => {
    onWake(resolve);
    if (deadline !== undefined) timer = setTimeout(resolve, Math.max(0, deadline - nowMs()) + 1);
    else if (inFlight === 0) resolve();
  });
  clearTimeout(timer);
}

/** What {@link withStorageInfo} needs of a host's storage sockets. */
export interface StorageInfoSource {
  offerStg(): Result<StgInfo>;
  attachedRegion(): AttachedRegion;
}

/**
 * Fills a side's handshake configuration with what its attached region says: the side that
 * sends the STG info (`fs-server`, `db-server`) offers an STG of its region with room for the
 * connection's rings; the side that receives it (`fs-client`, `db-client`) checks what it gets
 * against its region. Without storage the configuration is returned as it was.
 *
 * @param config the side's configuration (as passed to `parseHandshakeConfig`)
 * @param role the side's role
 * @param storage the side's storage sockets, if a region is attached
 * @returns the configuration, or the failure of the step that needed an STG (ENOBUFS)
 */
export function withStorageInfo(
  config: unknown,
  role: HandshakeRole,
  storage: StorageInfoSource | undefined,
): { readonly config: unknown } | { readonly failed: FailureReason } {
  if (storage === undefined || typeof config !== "object" || config === null) return { config };
  if (role === "fs-client" || role === "db-client") {
    return { config: { ...config, region: storage.attachedRegion() } };
  }
  const stg = storage.offerStg();
  if (!stg.ok) {
    const step = role === "fs-server" ? "138" : "236";
    return { failed: { origin: "local", code: stg.code, step, message: stg.message } };
  }
  return { config: { ...config, stg: stg.value } };
}
