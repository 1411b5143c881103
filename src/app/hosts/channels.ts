/**
 * Setting up a job's channels, the same on the server and on the agent: a handshake machine for
 * a role (its STG info filled from the side's region), driven over the side's sockets; a
 * session on the channels it established; and the wait for a peer's next message, where a
 * `failed` in its place is the peer's account of why it stopped.
 *
 * @module
 */

import { GRACE_ROWS } from "../../core/session/grace.ts";
import { parseSessionMessage, type SessionMessage } from "../../core/backup/protocol.ts";
import type { Sockets } from "../../core/dispatch/sockets.ts";
import { parseHandshakeConfig } from "../../core/handshake/config.ts";
import { createHandshake, listensFirst } from "../../core/handshake/mod.ts";
import { createNetworkOnlyHandshake } from "../../core/handshake/network_only.ts";
import type { Channels, FailureReason, HandshakeRole } from "../../core/handshake/types.ts";
import {
  driveHandshake,
  type HandshakeOutcome,
  readyToAccept,
  type StorageInfoSource,
  withStorageInfo,
} from "./handshake_driver.ts";
import { Session, type SessionChannels } from "./session.ts";
import { PeerFailedError } from "./peer_reports.ts";
import type { ZeroCopySockets } from "../../adapters/shm_zero_copy.ts";

/** Which handshake: the flow of a role, or Fig. 4 alone (the job channel, the network path). */
export type FlowKind = "storage" | "network";

/** One handshake to run. */
export interface FlowSpec {
  /** The role this side plays (the network path uses the fs roles). */
  readonly role: HandshakeRole;
  /** `storage`: the role's whole flow; `network`: Fig. 4 alone. */
  readonly kind: FlowKind;
  /** The configuration, as `parseHandshakeConfig` takes it (STG info is filled in here). */
  readonly config: Record<string, unknown>;
}

/**
 * Runs one handshake to its end.
 *
 * @param spec the role, the flow and its configuration
 * @param sockets the side's router
 * @param storage the side's storage sockets, if a region is attached
 * @param onListening called once a listening side's listeners are bound (its peer may start)
 * @param signal gives up (the peer already failed): the machine fails at its step and cleans up
 * @returns established with the channels, or failed with the reason
 */
export async function runHandshake(
  spec: FlowSpec,
  sockets: Sockets,
  storage: StorageInfoSource | undefined,
  onListening?: () => void,
  signal?: AbortSignal,
): Promise<HandshakeOutcome> {
  const filled = spec.kind === "storage"
    ? withStorageInfo(spec.config, spec.role, storage)
    : { config: spec.config };
  if ("failed" in filled) return { status: "failed", reason: filled.failed, setupMs: 0 };
  const config = parseHandshakeConfig(filled.config);
  if (!config.ok) {
    return {
      status: "failed",
      reason: { origin: "local", code: config.code, step: "0", message: config.message },
      setupMs: 0,
    };
  }
  const machine = spec.kind === "network"
    ? createNetworkOnlyHandshake(listensFirst(spec.role) ? "client" : "server", config.value)
    : createHandshake(spec.role, config.value);
  let told = false;
  return await driveHandshake(machine, sockets, {
    signal,
    onStep: (m) => {
      if (!told && listensFirst(spec.role) && readyToAccept(m)) {
        told = true;
        onListening?.();
      }
    },
  });
}

/**
 * How much a handshake failure says about the real cause, best first: 0 a side's own failure
 * (no STG space, no control block, the STG info refused, a port taken); 1 what the peer
 * reported; 2 a connection refused or reset (often the peer giving up); 3 a timeout (often
 * waiting for a peer that had already failed).
 *
 * @param reason a failure
 * @returns its rank
 */
export function failureRank(reason: FailureReason): number {
  if (reason.code === "ETIMEDOUT") return 3;
  if (["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOTCONN"].includes(reason.code)) return 2;
  return reason.origin === "local" ? 0 : 1;
}

/** A failure reason in one line: code, step, origin and message. */
export function describeFailure(
  reason: Omit<FailureReason, "origin"> & { readonly origin: string },
): string {
  return `${reason.code} at step ${reason.step} (${reason.origin}): ${reason.message}`;
}

/** Maps a handshake's channels to a session's three (one descriptor may carry several). */
export function sessionChannels(channels: Channels): SessionChannels {
  if (channels.control !== undefined && channels.error !== undefined) {
    return {
      control: channels.control,
      error: channels.error,
      data: channels.data ?? channels.control,
    };
  }
  const data = channels.data!;
  return { control: data, error: data, data };
}

/**
 * A session on established channels; keepalives keep quiet channels (the client's side of the
 * data channel, say) from reaching the peer's I/O timeout while the other direction is busy.
 *
 * @param sockets the side's router
 * @param channels what the handshake established
 * @param ioTimeoutMs the sockets' I/O timeout
 * @param zeroCopy the storage sockets' reserve/commit calls (data frames written in the ring)
 * @param label names the session in its receive errors (the side, the job, which channels)
 * @returns the session
 */
export function openSession(
  sockets: Sockets,
  channels: Channels,
  ioTimeoutMs: number,
  zeroCopy?: ZeroCopySockets,
  label?: string,
): Session {
  return new Session(sockets, sessionChannels(channels), {
    keepaliveMs: Math.max(100, Math.floor(ioTimeoutMs / 4)),
    zeroCopy,
    label,
  });
}

/** Closes every descriptor of a set of channels (best effort). */
export async function closeChannels(sockets: Sockets, channels: Channels): Promise<void> {
  for (const fd of new Set(Object.values(channels))) await sockets.close(fd).catch(() => {});
}

/**
 * The peer's next control message, of `type`; a `failed` in its place is the peer's account.
 *
 * @param session the session
 * @param type the message expected now
 * @param peer who the peer is, for the error (`agent`, `server`)
 * @returns the message
 * @throws {PeerFailedError} with the peer's reason; `SessionProtocolError` for anything else
 */
export async function expectFromPeer<T extends SessionMessage["type"]>(
  session: Session,
  type: T,
  peer: "client" | "server",
): Promise<Extract<SessionMessage, { type: T }>> {
  const message = await session.nextMessage("control");
  const failed = message as { type?: unknown; message?: unknown };
  if (failed?.type === "failed" && typeof failed.message === "string") {
    throw new PeerFailedError(peer, failed.message);
  }
  return parseSessionMessage(message, type);
}

/**
 * The sessions of one job on one side (the job channel's, and the data session's when it has
 * its own channels): opened here, told the reason when this side stops, closed at the end.
 */
export class JobSessions {
  readonly #sessions: Session[] = [];
  readonly #channels: Channels[] = [];

  /**
   * @param sockets the side's router
   * @param ioTimeoutMs the sockets' I/O timeout (keepalives go at a quarter of it)
   * @param zeroCopy the storage sockets' reserve/commit calls, when a region is attached
   * @param label the side and its job, naming the sessions in their receive errors
   */
  constructor(
    readonly sockets: Sockets,
    readonly ioTimeoutMs: number,
    readonly zeroCopy?: ZeroCopySockets,
    readonly label = "job",
  ) {}

  /** Opens a session on established channels and keeps it for the end. */
  open(channels: Channels): Session {
    const what = this.#sessions.length === 0 ? "job channel" : "data channels";
    this.#channels.push(channels);
    const label = `${this.label}, ${what}, session`;
    const session = openSession(this.sockets, channels, this.ioTimeoutMs, this.zeroCopy, label);
    this.#sessions.push(session);
    return session;
  }

  /** Sends `failed` with the reason on every channel of every session (each send bounded). */
  async tell(reason: string): Promise<void> {
    const failed = { type: "failed", message: reason.slice(0, 4000) };
    for (const session of this.#sessions) {
      for (const channel of ["control", "error"] as const) {
        await bounded(session.sendMessage(channel, failed), TELL_WAIT_MS);
      }
    }
  }

  /** Stops now: tells the peer why, then fails every wait and closes every descriptor. */
  stop(reason: unknown): void {
    const text = reason instanceof Error ? reason.message : String(reason ?? "stopped");
    void this.tell(text).finally(() => {
      for (const session of this.#sessions) session.abort(new Error(text));
      for (const channels of this.#channels) void closeChannels(this.sockets, channels);
    });
  }

  /** Closes every descriptor and waits for the sessions' receive loops to end. */
  async close(): Promise<void> {
    for (const channels of this.#channels) await closeChannels(this.sockets, channels);
    for (const session of this.#sessions) {
      session.close();
      await session.settled();
    }
  }
}

/** How long a failing side waits for each `failed` report to go out (see the row's rule). */
const TELL_WAIT_MS = GRACE_ROWS.tellWait.waitMs;

/** Waits for `promise` at most `waitMs` (its failure ignored). */
export async function bounded(promise: Promise<unknown>, waitMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.catch(() => {}),
    new Promise((resolve) => (timer = setTimeout(resolve, waitMs))),
  ]);
  clearTimeout(timer);
}

/** A flow result as the peer reports it on the job channel. */
export type FlowResultMessage = Extract<SessionMessage, { type: "flow-result" }>;

/**
 * The peer's account of its side of a data-flow handshake: read from the job channel while this
 * side's own handshake still runs, so that a peer that already failed makes this side give up
 * at once (`failed` aborts) instead of waiting for its deadline.
 */
export class PeerFlowResult {
  readonly #giveUp = new AbortController();
  #result: Promise<FlowResultMessage> | undefined;

  /**
   * @param session the job channel's session
   * @param peer who the peer is, for errors
   */
  constructor(readonly session: Session, readonly peer: "client" | "server") {}

  /** Aborted once the peer reported that its side failed (or the job channel broke). */
  get failed(): AbortSignal {
    return this.#giveUp.signal;
  }

  /** Starts reading the peer's result (once). */
  watch(): void {
    if (this.#result !== undefined) return;
    this.#result = expectFromPeer(this.session, "flow-result", this.peer);
    this.#result.then(
      (result) => result.established || this.#giveUp.abort(),
      () => this.#giveUp.abort(),
    );
  }

  /** The peer's result arrived in place of something else. */
  settle(result: FlowResultMessage): void {
    this.#result ??= Promise.resolve(result);
    if (!result.established) this.#giveUp.abort();
  }

  /** The peer's result (read now if it was not being read). */
  result(): Promise<FlowResultMessage> {
    this.watch();
    return this.#result!;
  }
}
