/**
 * The server's part of a job whose client part runs on an agent (another host, or a Worker of
 * this process for the embedded default): it connects the job channel to the agent's well-known
 * port (Fig. 4 alone), proves the agent key, sends the job, sets up the data path of the job's
 * mode and decides it (storage when both sides' handshakes were established; else the network,
 * with the agent's reason when the agent's side failed, since it received the STG info and
 * knows why), then writes the repository (backup), streams it (restore) or moves test payloads
 * (validate) over the data session, and waits for the agent's `job-done`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Sockets } from "../../core/dispatch/sockets.ts";
import { SocketError } from "../../core/dispatch/errors.ts";
import type { FailureReason } from "../../core/handshake/types.ts";
import type { Channels } from "../../core/handshake/types.ts";
import type { SessionMessage } from "../../core/backup/protocol.ts";
import { parseSessionMessage, SessionProtocolError } from "../../core/backup/protocol.ts";
import type { StorageSockets } from "../../adapters/shm.ts";
import type { HandshakeOutcome } from "../hosts/handshake_driver.ts";
import { type AgentKey, proveToAgent } from "../hosts/agent_key.ts";
import {
  closeChannels,
  describeFailure,
  expectFromPeer,
  failureRank,
  JobSessions,
  PeerFlowResult,
  runHandshake,
} from "../hosts/channels.ts";
import type { ChannelBytes, Session } from "../hosts/session.ts";
import { type BackupProgress, errorText, PeerFailedError } from "../hosts/peer_reports.ts";
import { type BackupServerResult, runBackupServer } from "./backup_server.ts";
import type { RestoreSenderResult } from "./restore_sender.ts";
import type { WriterStep } from "../repository/snapshot_writer.ts";
import { freePortPair } from "../hosts/ports.ts";
import type { RestoreJobRequest } from "../jobs/jobs.ts";

/** Tries of the job channel when the agent is between listeners or another server collided. */
const JOB_CHANNEL_ATTEMPTS = 10;
/** Job channels set up again at most after the agent dropped them unheard (see below). */
const JOB_CHANNEL_DROPS_MAX = 5;
/** Codes of a job-channel handshake worth another try. */
const RETRYABLE = new Set(["ECONNREFUSED", "ECONNRESET", "EPROTO", "EPIPE", "ENOTCONN"]);
/** Port tries for the database flow's listener. */
const PORT_ATTEMPTS_MAX = 5;
/** Bytes of the validation's data payload (each way). */
export const PROBE_BYTES = 1 << 20;

/** A job as the server's side runs it. */
export type ServerSideJob =
  & {
    /** The agent: its address and well-known port. */
    readonly agent: { readonly host: string; readonly port: number };
    readonly mode: "fs" | "db";
    /** `auto`: storage, else the network with the reason; `storage`: or fail; `network`. */
    readonly channel: "storage" | "network" | "auto";
  }
  & (
    | {
      readonly kind: "backup";
      readonly source: string;
      readonly incremental: boolean;
      readonly repo: string;
      readonly lockWaitMs: number;
    }
    | Omit<RestoreJobRequest, "agent" | "mode" | "channel">
    | { readonly kind: "validate" }
  );

/** What the server's side needs. */
export interface ServerSideOptions {
  readonly sockets: Sockets;
  /** The server's storage sockets, when it attached a region. */
  readonly storage?: StorageSockets | undefined;
  /** The agent key, or null (insecure: only an agent without a key passes). */
  readonly key: AgentKey | null;
  readonly ioTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  /** Cancels the job: it fails with the reason, told to the agent (a backup is aborted). */
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: BackupProgress) => void;
  /** Drill hook: awaited at every step of the snapshot's commit protocol. */
  readonly onWriterStep?: (step: WriterStep) => Promise<void> | void;
}

/** How the data path was decided. */
export interface DataPathReport {
  /** The channel the data went through. */
  readonly dataPath: "storage" | "network";
  /** Why the data went over the network when storage was tried first, or null. */
  readonly fallbackReason: string | null;
  /**
   * Every side's failure to set the storage path up, ranked (`rankFailures`: the first says most
   * about why); empty when none failed.
   */
  readonly storageFailures: readonly SideFailure[];
}

/** What the server's side did. */
export type ServerSideResult =
  & DataPathReport
  & {
    /** Bytes of the data session, per channel kind (sent and received). */
    readonly bytes: Readonly<ChannelBytes>;
    /** The agent's `job-done` result. */
    readonly agent: Record<string, unknown>;
    /** The job's source or target on the agent, canonical (null for a validation). */
    readonly agentPath: string | null;
  }
  & (
    | { readonly kind: "backup"; readonly backup: BackupServerResult }
    | { readonly kind: "restore"; readonly restore: RestoreSenderResult }
    | { readonly kind: "validate"; readonly validate: ProbeReport }
  );

/** What the validation's payloads did. */
export interface ProbeReport {
  /** The control, error and data channels each carried their payload intact, both ways. */
  readonly control: boolean;
  readonly error: boolean;
  readonly data: boolean;
  readonly dataBytes: number;
}

/** One side's failure to set up the storage path. */
export interface SideFailure {
  /** Which side it is from. */
  readonly side: "agent" | "server";
  /** What went wrong there. */
  readonly reason: FailureReason;
}

/**
 * Both sides' failures to set up storage, the one that says most first (`failureRank`; the
 * agent's when they rank the same: it received the STG info and knows why it refused it).
 *
 * @param agent the agent's failure, or null when its side did not fail
 * @param own the server's handshake outcome, or undefined when it never ran
 * @returns zero, one or two failures, ranked
 */
export function rankFailures(
  agent: FailureReason | null,
  own: HandshakeOutcome | undefined,
): SideFailure[] {
  const server = own?.status === "failed" ? own.reason : null;
  const failures: SideFailure[] = [];
  if (agent !== null) failures.push({ side: "agent", reason: agent });
  if (server !== null) failures.push({ side: "server", reason: server });
  // stable sort: the agent's stays first on a tie
  return failures.sort((a, b) => failureRank(a.reason) - failureRank(b.reason));
}

/**
 * The operator's line for a storage path that could not be set up: every side's failure,
 * ranked, e.g. "server: ETIMEDOUT at step 146 (…); agent: EACCES at step 20 (…)".
 *
 * @param failures the ranked failures (`rankFailures`)
 * @returns one line; a generic one when no side gave a failure
 */
export function describeFallback(failures: readonly SideFailure[]): string {
  if (failures.length === 0) return "the agent's side did not establish";
  return failures.map((f) => `${f.side}: ${describeFailure(f.reason)}`).join("; ");
}

/** The agent could not be reached, or refused the job channel. */
export class AgentUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AgentUnreachableError";
  }
}

/**
 * Runs the server's side of a job toward an agent.
 *
 * @param job what to do, with which agent
 * @param options sockets, region, key, bounds, cancel and progress
 * @returns how the data path was decided, the bytes per channel and the work's result
 * @throws when the job fails: the agent's account first when it gave one (`PeerFailedError`)
 */
export async function runServerSide(
  job: ServerSideJob,
  options: ServerSideOptions,
): Promise<ServerSideResult> {
  const planned = plannedPath(job, options.storage);
  if (planned.path === "network" && job.channel === "storage") {
    throw new Error(`--channel storage: ${planned.reason}`);
  }
  // Bounded: each turn sets a job channel up; one the agent dropped unheard is set up again.
  for (let attempt = 1;; attempt++) {
    const jobChannels = await connectJobChannel(job.agent, options);
    try {
      return await new ServerJob(job, options, jobChannels, planned).run();
    } catch (error) {
      if (!(error instanceof UnheardJobChannel)) throw error;
      if (attempt >= JOB_CHANNEL_DROPS_MAX || options.signal?.aborted) throw error.cause;
    }
  }
}

/**
 * A job channel whose handshake this side finished but on which the agent never said anything
 * in the session: the agent's own handshake failed after ours ended (ours ends with a send at
 * step 100; the agent's step 126 may have taken another server's control connection, queued at
 * its port, for our error connection: two jobs toward one agent at once). The agent closes both
 * connections, after sending its handshake's error message on the control one (a control frame:
 * its length prefix reads as session tag 0). Nothing of the job was sent yet (the key's proof
 * comes first), so the channel is set up again.
 */
class UnheardJobChannel extends Error {
  constructor(override readonly cause: unknown) {
    super(`the agent closed the job channel unheard: ${errorText(cause)}`);
    this.name = "UnheardJobChannel";
  }
}

/**
 * Failures of a fresh job channel that mean the agent is not on it: closed or reset, or EPROTO
 * (its handshake's error message, a control frame, read by the session: tag 0).
 */
const UNHEARD_CODES = new Set(["EPIPE", "ECONNRESET", "ENOTCONN", "EPROTO"]);

/** Storage unless told otherwise or impossible on this side (no region, no STG with room). */
function plannedPath(
  job: ServerSideJob,
  storage: StorageSockets | undefined,
): { path: "storage" | "network"; reason: string | null } {
  if (job.channel === "network") return { path: "network", reason: null };
  if (storage === undefined) return { path: "network", reason: "no storage region is attached" };
  const stg = storage.offerStg();
  if (!stg.ok) {
    const step = job.mode === "fs" ? "138" : "236";
    return {
      path: "network",
      reason: `the storage path could not be set up: ${stg.code} at step ${step} (local): ` +
        stg.message,
    };
  }
  return { path: "storage", reason: null };
}

/**
 * The address a connecting side reserves its port on (the connection itself goes out from a
 * dynamic port): loopback toward a loopback agent (no wider permission needed), else any.
 */
function localHostToward(host: string): string {
  return host === "localhost" || host.startsWith("127.") ? "127.0.0.1" : "0.0.0.0";
}

async function connectJobChannel(
  agent: ServerSideJob["agent"],
  options: ServerSideOptions,
): Promise<Channels> {
  let last: FailureReason | undefined;
  for (let attempt = 1; attempt <= JOB_CHANNEL_ATTEMPTS; attempt++) {
    const outcome = await runHandshake(
      {
        role: "fs-server",
        kind: "network",
        config: {
          wellKnownPort: agent.port,
          peerHost: agent.host,
          localHost: localHostToward(agent.host),
          handshakeTimeoutMs: options.handshakeTimeoutMs,
        },
      },
      options.sockets,
      undefined,
    );
    if (outcome.status === "established") return outcome.channels;
    last = outcome.reason;
    if (!RETRYABLE.has(last.code) || options.signal?.aborted) break;
    // The agent is between two listeners, or another server's connection met ours: again.
    await new Promise((resolve) => setTimeout(resolve, 40 * attempt + Math.random() * 60));
  }
  throw new AgentUnreachableError(
    `the agent at ${agent.host}:${agent.port} could not be reached: ${describeFailure(last!)}`,
  );
}

/** One job, from its job channel to the agent's `job-done`. */
class ServerJob {
  readonly #sessions: JobSessions;
  readonly jobSession: Session;
  readonly #jobChannels: Channels;

  constructor(
    readonly job: ServerSideJob,
    readonly options: ServerSideOptions,
    jobChannels: Channels,
    readonly planned: { path: "storage" | "network"; reason: string | null },
  ) {
    // The storage sockets' zero-copy calls: the backup server writes archive bytes from the ring.
    this.#sessions = new JobSessions(
      options.sockets,
      options.ioTimeoutMs,
      options.storage,
      `server, ${job.kind} job toward ${job.agent.host}:${job.agent.port}`,
    );
    this.#jobChannels = jobChannels;
    this.jobSession = this.#sessions.open(jobChannels);
  }

  async run(): Promise<ServerSideResult> {
    const { options } = this;
    const stop = () => this.#sessions.stop(options.signal?.reason);
    if (options.signal?.aborted) stop();
    options.signal?.addEventListener("abort", stop);
    try {
      await this.#prove();
      await this.jobSession.sendMessage("control", this.#jobMessage());
      const accepted = await expectFromPeer(this.jobSession, "job-accepted", "client");
      const { session, report } = await this.#dataPath();
      const work = await this.#work(session);
      const done = await expectFromPeer(this.jobSession, "job-done", "client");
      return {
        ...report,
        bytes: { ...session.bytes },
        agentPath: accepted.path,
        agent: done.result,
        ...work,
      };
    } catch (error) {
      if (!(error instanceof UnheardJobChannel)) await this.#sessions.tell(errorText(error));
      throw error;
    } finally {
      options.signal?.removeEventListener("abort", stop);
      await this.#sessions.close();
    }
  }

  /** Proves the agent key on the job channel; {@link UnheardJobChannel} when it was dropped. */
  async #prove(): Promise<void> {
    try {
      await proveToAgent(this.jobSession, this.options.key, "job");
    } catch (error) {
      const unheard = error instanceof SocketError && UNHEARD_CODES.has(error.code);
      if (unheard && this.jobSession.framesReceived === 0) throw new UnheardJobChannel(error);
      throw error;
    }
  }

  #jobMessage(): Extract<SessionMessage, { type: "job" }> {
    const { job } = this;
    const base = { type: "job" as const, mode: job.mode, dataPath: this.planned.path };
    if (job.kind === "backup") {
      return { ...base, kind: "backup", source: job.source, incremental: job.incremental };
    }
    if (job.kind === "restore") {
      return {
        ...base,
        kind: "restore",
        target: job.target,
        path: job.path ?? null,
        overwrite: job.overwrite,
        preservePermissions: job.preservePermissions,
      };
    }
    return { ...base, kind: "validate" };
  }

  /** Sets up and decides the data path; the session the work runs on. */
  async #dataPath(): Promise<{ session: Session; report: DataPathReport }> {
    if (this.planned.path === "network") {
      await this.jobSession.sendMessage("control", {
        type: "data-path",
        path: "network",
        reason: this.planned.reason,
      });
      return {
        session: this.jobSession,
        report: {
          dataPath: "network",
          fallbackReason: this.planned.reason,
          storageFailures: [],
        },
      };
    }
    const peer = new PeerFlowResult(this.jobSession, "client");
    const outcome = this.job.mode === "fs"
      ? await this.#connectFs(peer)
      : await this.#listenDb(peer);
    await this.jobSession.sendMessage("control", {
      type: "flow-result",
      established: outcome?.status === "established",
      reason: outcome?.status === "failed" ? outcome.reason : null,
    });
    const own = { outcome, agent: await peer.result() };
    const failures = rankFailures(own.agent.reason, own.outcome);
    if (own.agent.established && own.outcome?.status === "established") {
      await this.jobSession.sendMessage("control", {
        type: "data-path",
        path: "storage",
        reason: null,
      });
      const session = this.#sessions.open(own.outcome.channels);
      await proveToAgent(session, this.options.key, "data");
      const report = {
        dataPath: "storage" as const,
        fallbackReason: null,
        storageFailures: [],
      };
      return { session, report };
    }
    if (own.outcome?.status === "established") {
      await closeChannels(this.options.sockets, own.outcome.channels);
    }
    const reason = `the storage path could not be set up: ${describeFallback(failures)}`;
    if (this.job.channel === "storage") throw new Error(`--channel storage: ${reason}`);
    await this.jobSession.sendMessage("control", { type: "data-path", path: "network", reason });
    return {
      session: this.jobSession,
      report: {
        dataPath: "network",
        fallbackReason: reason,
        storageFailures: failures,
      },
    };
  }

  /** The file-system flow: the agent listens on a pair of the job and says where. */
  async #connectFs(peer: PeerFlowResult): Promise<HandshakeOutcome | undefined> {
    const where = parseSessionMessage(await this.#peerControl(), undefined);
    if (where.type === "flow-result") {
      peer.settle(where); // the agent could not listen
      return undefined;
    }
    if (where.type !== "fs-flow") {
      throw new SessionProtocolError(`expected fs-flow or flow-result, got ${where.type}`);
    }
    peer.watch();
    return await runHandshake(
      {
        role: "fs-server",
        kind: "storage",
        config: {
          wellKnownPort: where.wellKnownPort,
          peerHost: this.job.agent.host,
          localHost: localHostToward(this.job.agent.host),
          handshakeTimeoutMs: this.options.handshakeTimeoutMs,
        },
      },
      this.options.sockets,
      this.options.storage,
      undefined,
      peer.failed,
    );
  }

  /** The database flow: this side listens on a port of the job, the agent connects. */
  async #listenDb(peer: PeerFlowResult): Promise<HandshakeOutcome | undefined> {
    const control = this.#jobChannels.control!;
    const host = (await this.options.sockets.getsockname(control)) as { host: string };
    let outcome: HandshakeOutcome | undefined;
    for (let attempt = 1; attempt <= PORT_ATTEMPTS_MAX; attempt++) {
      const wellKnownPort = freePortPair(host.host);
      let told: Promise<void> | undefined;
      outcome = await runHandshake(
        {
          role: "db-server",
          kind: "storage",
          config: {
            wellKnownPort,
            localHost: host.host,
            peerHost: this.job.agent.host, // step 234 connects to the agent's dynamic port
            handshakeTimeoutMs: this.options.handshakeTimeoutMs,
          },
        },
        this.options.sockets,
        this.options.storage,
        () => {
          told = this.jobSession.sendMessage("control", {
            type: "db-flow",
            host: host.host,
            wellKnownPort,
          });
          peer.watch();
        },
        peer.failed,
      );
      await told;
      if (told !== undefined || outcome.status !== "failed") return outcome;
      if (outcome.reason.code !== "EADDRINUSE") return outcome;
    }
    return outcome;
  }

  /** The agent's next control message (its `failed` is thrown as its account). */
  async #peerControl(): Promise<unknown> {
    const message = await this.jobSession.nextMessage("control");
    const failed = message as { type?: unknown; message?: unknown };
    if (failed?.type === "failed" && typeof failed.message === "string") {
      throw new PeerFailedError("client", failed.message);
    }
    return message;
  }

  async #work(session: Session) {
    const { job, options } = this;
    if (job.kind === "backup") {
      const backup = await runBackupServer(session, {
        repo: job.repo,
        lockWaitMs: job.lockWaitMs,
        onProgress: options.onProgress,
        signal: options.signal,
        onWriterStep: options.onWriterStep,
      });
      return { kind: "backup" as const, backup };
    }
    if (job.kind === "restore") {
      // Loaded only for a restore: a backup's host does not load the archive reader.
      const { runRestoreSender } = await import("./restore_sender.ts");
      const restore = await runRestoreSender(session, {
        repo: job.repo,
        snapshot: job.snapshot,
        source: job.source,
        onProgress: options.onProgress,
      });
      return { kind: "restore" as const, restore };
    }
    return { kind: "validate" as const, validate: await sendProbes(session) };
  }
}

/** Moves a test payload through each channel, both ways, and checks what arrived. */
async function sendProbes(session: Session): Promise<ProbeReport> {
  const nonce = crypto.randomUUID();
  await session.sendMessage("control", { type: "probe", channel: "control", text: `c-${nonce}` });
  await session.sendMessage("error", { type: "probe", channel: "error", text: `e-${nonce}` });
  const payload = new Uint8Array(PROBE_BYTES);
  crypto.getRandomValues(payload.subarray(0, 65536));
  await session.sendData(payload);
  await session.endData();
  const sent = createHash("sha256").update(payload).digest("hex");
  const result = await expectFromPeer(session, "probe-result", "client");
  const back = createHash("sha256");
  let backBytes = 0;
  // Bounded by the agent's echo and its end.
  for (let chunk = await session.nextData(); chunk !== null; chunk = await session.nextData()) {
    back.update(chunk);
    backBytes += chunk.length;
  }
  return {
    control: result.control === `c-${nonce}`,
    error: result.error === `e-${nonce}`,
    data: result.dataSha256 === sent && result.dataBytes === PROBE_BYTES &&
      backBytes === PROBE_BYTES && back.digest("hex") === sent,
    dataBytes: result.dataBytes + backBytes,
  };
}
