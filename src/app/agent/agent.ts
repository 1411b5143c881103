/**
 * The agent: the long-running client role on the data host (`deno task agent`). It listens on
 * its well-known port for job channels, one handshake at a time, and serves each job to its end
 * while it already listens for the next, so several jobs run at once, each with its own ports,
 * control blocks and STG space. It reads and writes only under its roots. A stop (SIGINT,
 * SIGTERM, the signal) fails every running job with the reason, told to its server, and
 * releases the agent's region blocks and host slot.
 *
 * @module
 */

import { createTcpSockets } from "../../adapters/tcp.ts";
import { createStorageSockets, type StorageSockets } from "../../adapters/shm.ts";
import { openRegionFile, type RegionFile } from "../../adapters/region_file.ts";
import { HANDSHAKE_TIMEOUT_MS_DEFAULT } from "../../core/handshake/config.ts";
import { createRouter, unavailableSockets } from "../../core/dispatch/router.ts";
import type { AgentKey } from "../hosts/agent_key.ts";
import {
  type AgentHooks,
  type AgentJobEvent,
  type AgentJobOutcome,
  serveAgentJob,
} from "./agent_side.ts";
import type { BackupProgress } from "./backup_client.ts";

/** How an agent runs. */
export interface AgentOptions {
  /** Where it listens: its address and well-known port. */
  readonly listen: { readonly host: string; readonly port: number };
  /** Canonical directories it may read and write under. */
  readonly roots: readonly string[];
  /** A region file it maps (the server maps the same), or none. */
  readonly regionPath?: string | undefined;
  /** The agent key, or null (`--insecure-no-key`). */
  readonly key: AgentKey | null;
  /** Bound of every socket wait, ms (default 30 000). */
  readonly ioTimeoutMs?: number;
  /** Bound of each data-flow handshake, ms (default {@link HANDSHAKE_TIMEOUT_MS_DEFAULT}, 5000). */
  readonly handshakeTimeoutMs?: number;
  /** Most jobs at once (default 8); the agent listens again when one ends. */
  readonly jobsMax?: number;
  /** Stops the agent: running jobs fail with the signal's reason. */
  readonly signal: AbortSignal;
  /** What happens. */
  readonly onEvent: (event: AgentEvent) => void;
  /** Test hooks, handed to each job. */
  readonly hooks?: AgentHooks;
}

/** What an agent reports. */
export type AgentEvent =
  | {
    readonly type: "listening";
    readonly host: string;
    readonly port: number;
    readonly region: string | null;
    readonly regionId: string | null;
  }
  | {
    readonly type: "job-started";
    readonly job: number;
    readonly kind: string;
    readonly path: string | null;
  }
  | { readonly type: "job-progress"; readonly job: number; readonly progress: BackupProgress }
  | {
    readonly type: "job-done";
    readonly job: number;
    readonly kind: string;
    readonly result: Record<string, unknown>;
  }
  | { readonly type: "job-failed" | "job-refused"; readonly job: number; readonly reason: string }
  | { readonly type: "listen-failed"; readonly reason: string }
  | { readonly type: "stopping"; readonly reason: string }
  | { readonly type: "stopped" };

/** The agent cannot listen on its address (taken, not an address of this host, no permission). */
export class AgentListenError extends Error {
  /**
   * Makes the error.
   *
   * @param message the address and why it cannot be listened on
   */
  constructor(message: string) {
    super(message);
    this.name = "AgentListenError";
  }
}

/** Steps at which a failed listener is the agent's own address at fault (bind, listen). */
const BIND_STEPS = new Set(["114", "115"]);
/** Longest pause between two listeners after failed handshakes (a server that misbehaves). */
const BACKOFF_MS_MAX = 2_000;

/**
 * Runs an agent until its signal aborts.
 *
 * @param options address, roots, region, key, bounds, signal and events
 * @throws {AgentListenError} when it cannot listen on its address
 */
export async function runAgent(options: AgentOptions): Promise<void> {
  const file: RegionFile | undefined = options.regionPath === undefined
    ? undefined
    : openRegionFile(options.regionPath);
  let storage: StorageSockets | undefined;
  try {
    storage = file === undefined ? undefined : createStorageSockets({ region: file });
    await serveJobs(options, storage);
  } finally {
    await storage?.dispose(); // its blocks and its host slot go back to the region
    file?.close();
    await file?.closed;
    options.onEvent({ type: "stopped" });
  }
}

async function serveJobs(options: AgentOptions, storage: StorageSockets | undefined) {
  const ioTimeoutMs = options.ioTimeoutMs ?? 30_000;
  const sockets = createRouter({
    network: createTcpSockets({ ioTimeoutMs }),
    storage: storage ?? unavailableSockets("storage", "no storage region is attached"),
  });
  const running = new Set<Promise<AgentJobOutcome>>();
  const jobsMax = options.jobsMax ?? 8;
  let failures = 0;
  let announced = false;
  options.signal.addEventListener("abort", () => {
    options.onEvent({ type: "stopping", reason: String(options.signal.reason?.message ?? "") });
  });
  // Bounded by the signal: each turn sets up one job channel, or gives up one listener.
  for (let job = 1; !options.signal.aborted; job++) {
    if (running.size >= jobsMax) await Promise.race(running);
    let accepted = () => {};
    const channelUp = new Promise<void>((resolve) => (accepted = resolve));
    const served = serveAgentJob({
      listen: options.listen,
      roots: options.roots,
      key: options.key,
      sockets,
      storage,
      ioTimeoutMs,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS_DEFAULT,
      progressEveryMs: 250,
      signal: options.signal,
      hooks: options.hooks,
      onEvent: (event) => {
        if (event.type === "accepted") accepted();
        if (event.type === "listening" && !announced) {
          announced = true;
          options.onEvent({
            type: "listening",
            host: options.listen.host,
            port: event.port,
            region: options.regionPath ?? null,
            regionId: storage?.layout.regionId ?? null,
          });
        }
        report(options, job, event);
      },
    });
    const first = await Promise.race([channelUp.then(() => "accepted" as const), served]);
    if (first !== "accepted") {
      if (first.status !== "no-job") continue;
      failures = await listenerFailed(options, first.reason, failures, announced);
      continue;
    }
    failures = 0;
    const tracked = served.finally(() => running.delete(tracked));
    running.add(tracked);
  }
  await Promise.allSettled(running);
}

/**
 * Whether a listener that ended without a job ends the agent: a failed bind or listen of its
 * first listener (its address is taken, or not this host's). Once the agent has listened, a
 * failed bind is not fatal: between two listeners the port is free, and an outgoing connection
 * of any process may take it as its ephemeral source port for a while (an agent whose port lies
 * in the ephemeral range): the agent pauses and listens again, as after a failed handshake.
 *
 * @param reason the handshake's failure, as `describeFailure` words it (`... at step N ...`)
 * @param listenedBefore whether the agent has listened on its address already
 * @returns true when the agent is to stop with {@link AgentListenError}
 */
export function listenFailureIsFatal(reason: string, listenedBefore: boolean): boolean {
  const step = /at step (\S+)/.exec(reason)?.[1] ?? "";
  return BIND_STEPS.has(step) && !listenedBefore;
}

/**
 * A listener ended without a job: fatal at the first bind ({@link listenFailureIsFatal}), else
 * a pause that grows with each failure.
 */
async function listenerFailed(
  options: AgentOptions,
  reason: string,
  failures: number,
  listenedBefore: boolean,
): Promise<number> {
  if (listenFailureIsFatal(reason, listenedBefore)) {
    throw new AgentListenError(
      `cannot listen on ${options.listen.host}:${options.listen.port}: ${reason}`,
    );
  }
  if (options.signal.aborted || /ETIMEDOUT at step 118 /.test(reason)) return 0; // a quiet cycle
  options.onEvent({ type: "listen-failed", reason });
  const pauseMs = Math.min(BACKOFF_MS_MAX, 50 * 2 ** Math.min(failures, 6));
  await new Promise((resolve) => setTimeout(resolve, pauseMs));
  return failures + 1;
}

function report(options: AgentOptions, job: number, event: AgentJobEvent): void {
  switch (event.type) {
    case "started":
      return options.onEvent({ type: "job-started", job, kind: event.kind, path: event.path });
    case "progress":
      return options.onEvent({ type: "job-progress", job, progress: event.progress });
    case "done":
      return options.onEvent({ type: "job-done", job, kind: event.kind, result: event.result });
    case "failed":
      return options.onEvent({ type: "job-failed", job, reason: event.reason });
    case "refused":
      return options.onEvent({ type: "job-refused", job, reason: event.reason });
  }
}
