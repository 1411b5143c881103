/**
 * The agent's part of one job, on the host that owns the data: it listens on its well-known port
 * for the job channel (Fig. 4 alone: control and error connections), proves the agent key, takes
 * the job, checks its paths against the agent's roots, sets up the data path of the job's mode
 * (file-system flow: it listens on a port pair of the job and says where; database flow: it
 * connects to where the server says), and runs the backup client, the restore writer or the
 * validation over the data session. It reports its side of every step to the server on the job
 * channel, so the server always learns the agent's own reason for a failure (the receiving side
 * of the STG info is the one that knows why it was refused).
 *
 * The server decides the data path (`data-path`): storage when both sides' handshakes were
 * established, else the network (the job channel itself carries the data, as on the network
 * path) with the reason, or the job fails when it asked for storage only.
 *
 * @module
 */

import type { Sockets } from "../../core/dispatch/sockets.ts";
import type { HandshakeOutcome } from "../hosts/handshake_driver.ts";
import type { StorageSockets } from "../../adapters/shm.ts";
import { type AgentKey, AgentKeyError, proveToServer } from "../hosts/agent_key.ts";
import {
  parseSessionMessage,
  type SessionMessage,
  SessionProtocolError,
} from "../../core/backup/protocol.ts";
import {
  closeChannels,
  describeFailure,
  expectFromPeer,
  JobSessions,
  PeerFlowResult,
  runHandshake,
} from "../hosts/channels.ts";
import type { Session } from "../hosts/session.ts";
import {
  type BackupProgress,
  errorOrigin,
  errorText,
  PeerFailedError,
  runBackupClient,
} from "./backup_client.ts";
import { canonicalPath, isInsidePath } from "../paths.ts";
import { checkSource, sourceIdentity } from "./snapshot_source.ts";
import { freePortPair } from "../hosts/ports.ts";
import { createHash } from "node:crypto";
import type { Channels } from "../../core/handshake/types.ts";
import { type WalkedTree, walkSource } from "./tree_walk.ts";
import type { ExcludedPath } from "./source_exclusions.ts";

/** How long a listening job channel waits for a server before it starts over (the maximum). */
export const LISTEN_CYCLE_MS = 600_000;
/** Port pairs tried for a job's file-system flow before the agent gives up. */
const PORT_ATTEMPTS_MAX = 5;

/** What the agent side needs. */
export interface AgentSideOptions {
  /** Where the agent listens: its address and well-known port. */
  readonly listen: { readonly host: string; readonly port: number };
  /** Canonical directories the agent may read and write under. */
  readonly roots: readonly string[];
  /** Paths left out of every backup (the embedded default's repository, when in the source). */
  readonly excluded?: readonly ExcludedPath[];
  /** The agent key, or null (`--insecure-no-key`). */
  readonly key: AgentKey | null;
  /** The agent's router (TCP and, with a region, storage). */
  readonly sockets: Sockets;
  /** The agent's storage sockets, when it attached a region. */
  readonly storage?: StorageSockets | undefined;
  /**
   * False: the data session copies archive bytes into the storage ring instead of packing them
   * in place through the storage sockets' reserve/commit (default true: in place).
   */
  readonly zeroCopy?: boolean;
  readonly ioTimeoutMs: number;
  readonly handshakeTimeoutMs: number;
  /** A port to a hash worker (the packer hashes large archives off the main thread). */
  readonly hashWorker?: () => Promise<MessagePort>;
  readonly progressEveryMs?: number;
  /** Stops the job: it fails with the signal's reason, told to the server. */
  readonly signal?: AbortSignal;
  /** What happens, as it happens. */
  readonly onEvent?: (event: AgentJobEvent) => void;
  /** Test hooks (a walk that holds the thread, to show what it may not delay). */
  readonly hooks?: AgentHooks;
}

/** Test hooks of an agent. */
export interface AgentHooks {
  /** Runs just before a backup's walk starts (a test holds the thread in it, as a walk does). */
  readonly beforeWalk?: () => Promise<void>;
}

/** What one job of an agent went through. */
export type AgentJobEvent =
  | { readonly type: "listening"; readonly port: number }
  | { readonly type: "accepted" }
  | { readonly type: "started"; readonly kind: string; readonly path: string | null }
  | { readonly type: "progress"; readonly progress: BackupProgress }
  | { readonly type: "done"; readonly kind: string; readonly result: Record<string, unknown> }
  | { readonly type: "refused"; readonly reason: string }
  | { readonly type: "failed"; readonly reason: string };

/** How a listening agent side ended. */
export type AgentJobOutcome =
  | { readonly status: "no-job"; readonly reason: string }
  | { readonly status: "done"; readonly kind: string; readonly result: Record<string, unknown> }
  | {
    readonly status: "refused" | "failed";
    readonly reason: string;
    /** `own`: this side's cause; `peer`: the server's, relayed; `transport`: a socket failed. */
    readonly origin: "own" | "peer" | "transport";
  };

type JobMessage = Extract<SessionMessage, { type: "job" }>;

/** A job's path was refused (outside the roots, missing, of the wrong type). */
export class AgentPathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AgentPathError";
  }
}

/**
 * Listens for one job and serves it to its end.
 *
 * @param options where to listen, the roots, the key, the sockets
 * @returns what became of it; `no-job` when no job channel was set up (nobody came within the
 *   listening cycle, or a handshake failed): the caller listens again
 */
export async function serveAgentJob(options: AgentSideOptions): Promise<AgentJobOutcome> {
  const outcome = await runHandshake(
    {
      role: "fs-client",
      kind: "network",
      config: {
        wellKnownPort: options.listen.port,
        localHost: options.listen.host,
        handshakeTimeoutMs: LISTEN_CYCLE_MS,
      },
    },
    options.sockets,
    undefined,
    () => options.onEvent?.({ type: "listening", port: options.listen.port }),
    options.signal,
  );
  if (outcome.status === "failed") {
    return { status: "no-job", reason: describeFailure(outcome.reason) };
  }
  options.onEvent?.({ type: "accepted" });
  return await new AgentJob(options, outcome.channels).run();
}

/** One job, from its job channel to its end. */
class AgentJob {
  readonly #sessions: JobSessions;
  readonly jobSession: Session;

  constructor(readonly options: AgentSideOptions, jobChannels: Channels) {
    const zeroCopy = options.zeroCopy === false ? undefined : options.storage;
    const label = `agent ${options.listen.host}:${options.listen.port}, job`;
    this.#sessions = new JobSessions(options.sockets, options.ioTimeoutMs, zeroCopy, label);
    this.jobSession = this.#sessions.open(jobChannels);
  }

  async run(): Promise<AgentJobOutcome> {
    const { options } = this;
    const stop = () => this.#sessions.stop(options.signal?.reason);
    if (options.signal?.aborted) stop();
    options.signal?.addEventListener("abort", stop);
    try {
      await proveToServer(this.jobSession, options.key, "job");
      const job = await expectFromPeer(this.jobSession, "job", "server");
      const path = await checkPaths(job, options.roots);
      await this.jobSession.sendMessage("control", { type: "job-accepted", path });
      options.onEvent?.({ type: "started", kind: job.kind, path });
      const data = await this.#dataPath(job);
      // The walk starts once the data path is set up, not beside the set-up: on this thread its
      // synchronous slices would starve the handshake's steps, and a large tree's walk then ran
      // the agent past the handshake deadline (a 1M-entry tree: ETIMEDOUT at step 126). It
      // still overlaps the session's opening (the server choosing and streaming the parent).
      const walk = () =>
        walkSource(path!, { exclude: (options.excluded ?? []).map((e) => e.path) });
      const beforeWalk = options.hooks?.beforeWalk;
      const walked = job.kind === "backup" && job.mode === "fs"
        ? (beforeWalk === undefined ? walk() : beforeWalk().then(walk))
        : undefined;
      walked?.catch(() => {}); // its error surfaces where it is used
      const result = await this.#work(job, path, data, walked);
      await this.jobSession.sendMessage("control", { type: "job-done", result });
      options.onEvent?.({ type: "done", kind: job.kind, result });
      return { status: "done", kind: job.kind, result };
    } catch (error) {
      const reason = options.signal?.aborted ? stopReason(options.signal) : errorText(error);
      await this.#sessions.tell(reason);
      const refused = error instanceof AgentKeyError || error instanceof AgentPathError;
      options.onEvent?.({ type: refused ? "refused" : "failed", reason });
      const origin = options.signal?.aborted ? "own" : errorOrigin(error);
      return { status: refused ? "refused" : "failed", reason, origin };
    } finally {
      options.signal?.removeEventListener("abort", stop);
      await this.#sessions.close();
    }
  }

  /** Sets up the data path; returns the session the work runs on and its channel kind. */
  async #dataPath(job: JobMessage): Promise<{ session: Session; path: "storage" | "network" }> {
    let own: HandshakeOutcome | undefined;
    if (job.dataPath === "storage") {
      const peer = new PeerFlowResult(this.jobSession, "server");
      own = job.mode === "fs" ? await this.#listenFs(peer) : await this.#connectDb(peer);
      await this.jobSession.sendMessage("control", {
        type: "flow-result",
        established: own?.status === "established",
        reason: own?.status === "failed" ? own.reason : null,
      });
      await peer.result();
    }
    const decision = await expectFromPeer(this.jobSession, "data-path", "server");
    if (decision.path === "storage") {
      if (own?.status !== "established") {
        throw new Error("the server chose storage, but this side's handshake did not establish");
      }
      const session = this.#sessions.open(own.channels);
      await proveToServer(session, this.options.key, "data");
      return { session, path: "storage" };
    }
    if (own?.status === "established") await closeChannels(this.options.sockets, own.channels);
    return { session: this.jobSession, path: "network" };
  }

  /** The file-system flow: listens on a port pair of the job, tells the server where. */
  async #listenFs(peer: PeerFlowResult): Promise<HandshakeOutcome | undefined> {
    const { options } = this;
    let outcome: HandshakeOutcome | undefined;
    for (let attempt = 1; attempt <= PORT_ATTEMPTS_MAX; attempt++) {
      const wellKnownPort = freePortPair(options.listen.host);
      let told: Promise<void> | undefined;
      outcome = await runHandshake(
        {
          role: "fs-client",
          kind: "storage",
          config: {
            wellKnownPort,
            localHost: options.listen.host,
            handshakeTimeoutMs: options.handshakeTimeoutMs,
          },
        },
        options.sockets,
        options.storage,
        () => {
          told = this.jobSession.sendMessage("control", { type: "fs-flow", wellKnownPort });
          peer.watch(); // the server's account may come while this side still waits
        },
        peer.failed,
      );
      await told;
      // A port taken between choosing and binding: try another, unless the server was told.
      if (told !== undefined || outcome.status !== "failed") return outcome;
      if (outcome.reason.code !== "EADDRINUSE") return outcome;
    }
    return outcome;
  }

  /** The database flow: the agent initiates toward the server's well-known port. */
  async #connectDb(peer: PeerFlowResult): Promise<HandshakeOutcome | undefined> {
    const target = parseSessionMessage(await this.jobSession.nextMessage("control"));
    if (target.type === "flow-result") {
      peer.settle(target); // the server could not listen: nothing to connect to
      return undefined;
    }
    if (target.type === "failed") throw new PeerFailedError("server", target.message);
    if (target.type !== "db-flow") {
      throw new SessionProtocolError(`expected db-flow, got ${target.type}`);
    }
    peer.watch();
    return await runHandshake(
      {
        role: "db-client",
        kind: "storage",
        config: {
          wellKnownPort: target.wellKnownPort,
          peerHost: target.host,
          localHost: this.options.listen.host,
          handshakeTimeoutMs: this.options.handshakeTimeoutMs,
        },
      },
      this.options.sockets,
      this.options.storage,
      undefined,
      peer.failed,
    );
  }

  /** Runs the job over the data session. */
  async #work(
    job: JobMessage,
    path: string | null,
    data: { session: Session; path: "storage" | "network" },
    walked: Promise<WalkedTree> | undefined,
  ): Promise<Record<string, unknown>> {
    const onProgress = (progress: BackupProgress) =>
      this.options.onEvent?.({ type: "progress", progress });
    if (job.kind === "backup") {
      const result = await runBackupClient(data.session, {
        mode: job.mode,
        source: path!,
        incremental: job.incremental,
        dataChannel: data.path,
        onProgress,
        progressEveryMs: this.options.progressEveryMs,
        hashWorker: this.options.hashWorker,
        walked,
      });
      return { ...result };
    }
    if (job.kind === "restore") {
      // Loaded only for a restore: a backup's host does not load the restore writer.
      const [{ runRestoreReceiver }, { IncompleteRestore }] = await Promise.all([
        import("./restore_receiver.ts"),
        import("../repository/restore.ts"),
      ]);
      try {
        const summary = await runRestoreReceiver(data.session, {
          target: path!,
          path: job.path ?? undefined,
          overwrite: job.overwrite,
          preservePermissions: job.preservePermissions,
          onProgress,
          progressEveryMs: this.options.progressEveryMs,
        });
        return { ...summary, ok: true, receivedFrames: { ...data.session.receivedFrames } };
      } catch (error) {
        if (error instanceof IncompleteRestore) {
          return {
            ...error.summary,
            ok: false,
            receivedFrames: { ...data.session.receivedFrames },
          };
        }
        throw error;
      }
    }
    return await answerProbes(data.session);
  }
}

/** Most bytes of a validation's data payload an agent takes. */
const PROBE_BYTES_MAX = 16 << 20;

/** The validation's payloads: what arrived on each channel; the data payload goes back. */
async function answerProbes(session: Session): Promise<Record<string, unknown>> {
  const control = await expectFromPeer(session, "probe", "server");
  const error = parseSessionMessage(await session.nextMessage("error"), "probe");
  const hash = createHash("sha256");
  const chunks: Uint8Array[] = [];
  let dataBytes = 0;
  // Bounded by the server's payload and its end (a probe is small: kept to be sent back).
  for (let chunk = await session.nextData(); chunk !== null; chunk = await session.nextData()) {
    if (dataBytes + chunk.length > PROBE_BYTES_MAX) throw new Error("the probe is too large");
    hash.update(chunk);
    chunks.push(chunk.slice());
    dataBytes += chunk.length;
  }
  await session.sendMessage("control", {
    type: "probe-result",
    control: control.text,
    error: error.text,
    dataBytes,
    dataSha256: hash.digest("hex"),
  });
  for (const chunk of chunks) await session.sendData(chunk); // the payload goes back as it came
  await session.endData();
  return { dataBytes };
}

/** The job's source or target, canonical and inside the roots; null for a validation. */
async function checkPaths(job: JobMessage, roots: readonly string[]): Promise<string | null> {
  if (job.kind === "validate") return null;
  const [field, given] = job.kind === "backup"
    ? ["source", job.source] as const
    : ["target", job.target] as const;
  // A source must exist (its real path is its identity); a target may not exist yet.
  const real = job.kind === "backup"
    ? await sourceIdentity(given).catch((error) => {
      throw new AgentPathError(errorText(error));
    })
    : await canonicalPath(given);
  if (!roots.some((root) => isInsidePath(real, root))) {
    throw new AgentPathError(
      `${field} ${given} (${real}) is outside this agent's roots (${roots.join(", ")}); ` +
        "nothing was read or written",
    );
  }
  if (job.kind === "backup") {
    await checkSource(real, job.mode).catch((error) => {
      throw new AgentPathError(errorText(error));
    });
  }
  return real;
}

function stopReason(signal: AbortSignal): string {
  const reason = signal.reason;
  return reason instanceof Error ? reason.message : String(reason ?? "stopped");
}
