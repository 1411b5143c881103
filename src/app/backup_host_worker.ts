/**
 * A Worker host for one side of a backup: sets up the channels with the handshake of the job's
 * mode and path, then runs the backup client or server over them.
 *
 * Paths: `storage` uses the file-system flow (fs mode: control and error on the network, data
 * through storage) or the database flow (db mode: everything through storage); `network` uses
 * Fig. 4 alone and sends the data on the control connection.
 *
 * Messages out: `{ ready }` (a listening side accepts connections), `{ progress }`,
 * `{ handshakeFailed }`, `{ result }`, `{ error, origin }`, `{ paused }` (a drill stopped the server at a
 * writer step), and `{ wantHashWorker }` (the client asks the job for a port to a hash worker,
 * answered by `{ hashPort }`: a Worker started inside a Worker takes about a second to come up
 * on Deno 2.9, one started by the job does not). Message in, besides the job: `{ cancel }`
 * stops the backup the way a failure does (the server aborts its snapshot), then the side
 * reports `{ error }`.
 *
 * @module
 */

import { createTcpSockets } from "../adapters/tcp.ts";
import { createStorageSockets, type StorageSockets } from "../adapters/shm.ts";
import { createRouter, unavailableSockets } from "../core/dispatch/router.ts";
import type { Sockets } from "../core/dispatch/sockets.ts";
import { createHandshake } from "../core/handshake/mod.ts";
import { parseHandshakeConfig } from "../core/handshake/config.ts";
import { createNetworkOnlyHandshake } from "../core/handshake/network_only.ts";
import type {
  Channels,
  FailureReason,
  HandshakeMachine,
  HandshakeRole,
} from "../core/handshake/types.ts";
import { driveHandshake, readyToAccept, withStorageInfo } from "./handshake_driver.ts";
import { Session, type SessionChannels } from "./session.ts";
import { type BackupProgress, runBackupClient } from "./backup_client.ts";
import { runBackupServer } from "./backup_server.ts";
import { errorText, PeerFailedError } from "./backup_client.ts";
import { SocketError } from "../core/dispatch/errors.ts";
import { walkSource } from "./tree_walk.ts";
import type { ExcludedPath } from "./source_exclusions.ts";
import type { WriterStep } from "./snapshot_writer.ts";

/** The job of one side. */
export interface BackupHostJob {
  readonly side: "client" | "server";
  readonly mode: "fs" | "db";
  readonly path: "storage" | "network";
  readonly handshake: unknown;
  /** The storage region, or null when none is attached. */
  readonly region: SharedArrayBuffer | null;
  readonly ioTimeoutMs: number;
  readonly client?: {
    readonly source: string;
    readonly incremental: boolean;
    readonly progressEveryMs: number;
    /** Paths of the source left out on purpose (the repository, when it lies inside). */
    readonly excluded?: readonly ExcludedPath[];
  };
  readonly server?: {
    readonly repo: string;
    readonly lockWaitMs: number;
    /** Drill: stop at this writer step, report `{ paused }`, and wait for a cancel. */
    readonly pauseAt?: WriterStep;
  };
}

type HostMessage =
  | BackupHostJob
  | { readonly go: true }
  | { readonly hashPort: MessagePort }
  | { readonly cancel: string };

const scope = self as unknown as {
  postMessage(message: unknown): void;
  onmessage: ((event: MessageEvent<HostMessage>) => void) | null;
};

let go: () => void = () => {};
const told = new Promise<void>((resolve) => (go = resolve));
/** Aborted with a {@link BackupCancelledError} when the job sends `{ cancel }`. */
const cancelled = new AbortController();

/** The job was cancelled: the side stops as a failure would, with this reason. */
export class BackupCancelledError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "BackupCancelledError";
  }
}
let gotHashPort: (port: MessagePort) => void = () => {};

/** Asks the job for a port to a hash worker (once per host; a host runs one backup). */
function hashWorkerPort(): Promise<MessagePort> {
  const port = new Promise<MessagePort>((resolve) => (gotHashPort = resolve));
  scope.postMessage({ wantHashWorker: true });
  return port;
}

/**
 * Where a side's failure came from: `peer` (it failed because the peer reported a failure),
 * `transport` (a socket failed, often because the peer went away), or `own` (the real cause).
 */
export type ErrorOrigin = "own" | "peer" | "transport";

function errorOrigin(error: unknown): ErrorOrigin {
  if (error instanceof PeerFailedError) return "peer";
  return error instanceof SocketError ? "transport" : "own";
}

/** Which side listens: the fs client (Fig. 4/4A, and the network path), the db server (Fig. 5). */
export function listensFirst(job: Pick<BackupHostJob, "side" | "mode" | "path">): boolean {
  return job.mode === "db" && job.path === "storage"
    ? job.side === "server"
    : job.side === "client";
}

function roleOf(job: BackupHostJob): HandshakeRole {
  return job.mode === "fs"
    ? (job.side === "client" ? "fs-client" : "fs-server")
    : (job.side === "client" ? "db-client" : "db-server");
}

/** The side's machine; on the storage path its STG info comes from the region it attached. */
function machineFor(
  job: BackupHostJob,
  storage: StorageSockets | undefined,
): HandshakeMachine | FailureReason {
  const filled = job.path === "storage"
    ? withStorageInfo(job.handshake, roleOf(job), storage)
    : { config: job.handshake };
  if ("failed" in filled) return filled.failed;
  const config = parseHandshakeConfig(filled.config);
  if (!config.ok) throw new Error(config.message);
  if (job.path === "network") return createNetworkOnlyHandshake(job.side, config.value);
  return createHandshake(roleOf(job), config.value);
}

/** Maps a handshake's channels to the session's three. */
function sessionChannels(channels: Channels): SessionChannels {
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

async function runSide(job: BackupHostJob, sockets: Sockets, storage?: StorageSockets) {
  const machine = machineFor(job, storage);
  if (!("handle" in machine)) {
    scope.postMessage({ handshakeFailed: machine });
    return;
  }
  // The walk needs no channel: it runs while the handshake does (its errors surface when used).
  const walked = job.side === "client" && job.mode === "fs"
    ? walkSource(job.client!.source, { exclude: (job.client!.excluded ?? []).map((e) => e.path) })
    : undefined;
  walked?.catch(() => {});
  if (!listensFirst(job)) await told;
  let readyPosted = false;
  const outcome = await driveHandshake(machine, sockets, {
    onStep: (m) => {
      if (!readyPosted && listensFirst(job) && readyToAccept(m)) {
        readyPosted = true;
        scope.postMessage({ ready: true });
      }
    },
  });
  if (outcome.status === "failed") {
    scope.postMessage({ handshakeFailed: outcome.reason });
    return;
  }
  // Keepalives keep quiet channels (the client's side of the data channel, say) from reaching
  // the peer's I/O timeout while the other direction is busy.
  const session = new Session(sockets, sessionChannels(outcome.channels), {
    keepaliveMs: Math.max(100, Math.floor(job.ioTimeoutMs / 4)),
  });
  const descriptors = new Set(Object.values(outcome.channels));
  const stop = () => {
    session.abort(cancelled.signal.reason);
    // Sends in flight (a full ring, say) end when their descriptors close.
    for (const fd of descriptors) sockets.close(fd).catch(() => {});
  };
  if (cancelled.signal.aborted) stop();
  else cancelled.signal.addEventListener("abort", stop);
  const onProgress = (progress: BackupProgress) => scope.postMessage({ progress });
  try {
    const result = job.side === "client"
      ? await runBackupClient(session, {
        mode: job.mode,
        source: job.client!.source,
        incremental: job.client!.incremental,
        dataChannel: job.path,
        onProgress,
        progressEveryMs: job.client!.progressEveryMs,
        hashWorker: hashWorkerPort,
        walked,
      })
      : await runBackupServer(session, {
        repo: job.server!.repo,
        lockWaitMs: job.server!.lockWaitMs,
        onProgress,
        signal: cancelled.signal,
        onWriterStep: (step) => pauseForDrill(step, job.server!.pauseAt),
      });
    scope.postMessage({ result });
  } finally {
    cancelled.signal.removeEventListener("abort", stop);
    for (const fd of descriptors) await sockets.close(fd).catch(() => {});
    await session.settled();
  }
}

/** The drill's pause: at `pauseAt`, report it and wait until the job cancels this host. */
async function pauseForDrill(step: WriterStep, pauseAt: WriterStep | undefined): Promise<void> {
  if (step !== pauseAt || cancelled.signal.aborted) return;
  scope.postMessage({ paused: step });
  await new Promise((resolve) => cancelled.signal.addEventListener("abort", resolve));
}

async function run(job: BackupHostJob): Promise<void> {
  let storage: StorageSockets | undefined;
  try {
    storage = job.region === null ? undefined : createStorageSockets({ region: job.region });
    const sockets = createRouter({
      network: createTcpSockets({ ioTimeoutMs: job.ioTimeoutMs }),
      storage: storage ?? unavailableSockets("storage", "no storage region is attached"),
    });
    await runSide(job, sockets, storage);
  } finally {
    await storage?.dispose();
  }
}

scope.onmessage = (event) => {
  const message = event.data;
  if ("go" in message) {
    go();
    return;
  }
  if ("hashPort" in message) {
    gotHashPort(message.hashPort);
    return;
  }
  if ("cancel" in message) {
    cancelled.abort(new BackupCancelledError(message.cancel));
    return;
  }
  run(message).catch((error) =>
    scope.postMessage({ error: errorText(error), origin: errorOrigin(error) })
  );
};
