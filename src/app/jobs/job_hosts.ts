/**
 * Runs a job's side hosts (`side_host.ts`) and ends the run exactly once: the agent's
 * side for the embedded default (a Worker listening on 127.0.0.1) and the server's side (toward
 * that Worker, or toward an agent on another host). It relays progress, hash-worker requests,
 * drill pauses and cancels; collects each side's result or error; and, whatever happened,
 * terminates the hosts, reclaims the region's blocks of hosts that died, and, when the server
 * host ended without reporting (it crashed, or did not stop in time after a cancel), removes its
 * half-written snapshot so the repository is as before.
 *
 * @module
 */

import { GRACE_ROWS } from "../../core/session/grace.ts";
import { type Side, type SideLink, startSideHost } from "./side_host_start.ts";
import type { RegionFile } from "../../adapters/region_file.ts";
import { regionUsage, usageOfBuffer } from "../../core/stp/usage.ts";
import type { BackupProgress } from "../agent/backup_client.ts";
import type { AgentJobOutcome } from "../agent/agent_side.ts";
import type { ServerSideResult } from "../server/server_side.ts";
import type { ErrorOrigin, JobRegion, SideHostJob, SideHostReport } from "../hosts/side_host.ts";
import type { WriterStep } from "../repository/snapshot_writer.ts";

const HASH_WORKER = new URL("../agent/_hash_worker.ts", import.meta.url);
/** How long a failed side's job waits for the other side's account (see the row's rule). */
const ERROR_GRACE_MS = GRACE_ROWS.errorGrace.waitMs;
/** How long a cancelled job waits for its hosts to stop on their own before terminating them. */
const CANCEL_GRACE_MS = 10_000;
/** How long the embedded agent side may take to listen. */
const LISTEN_WAIT_MS = 60_000;

/** A side's failure as its host reported it. */
export interface SideError {
  readonly text: string;
  readonly origin: ErrorOrigin;
}

/** A job that did not happen, with the reason in words (each side's account, real cause first). */
export class BackupJobError extends Error {
  /**
   * Makes the error.
   *
   * @param message why the job did not happen, with the facts
   * @param transport the channels failed: no side reported a cause of its own
   */
  constructor(message: string, readonly transport = false) {
    super(message);
    this.name = "BackupJobError";
  }
}

/**
 * The job's error from both sides' accounts, real cause first: a side's own failure (server
 * first when both have one) without the peer's echo of it; failing that, the cause a side
 * relayed from its peer; socket failures (often just the peer going away) only when nothing
 * else is known.
 *
 * @param errors each side's failure, if it reported one
 * @returns the message, each account prefixed with its side
 */
export function jobErrorMessage(errors: Partial<Record<Side, SideError>>): string {
  const sides = (["server", "client"] as const).filter((side) => errors[side] !== undefined);
  const own = sides.filter((side) => errors[side]!.origin === "own");
  if (own.length > 0) return own.map((side) => `${side}: ${errors[side]!.text}`).join("; ");
  const relayed = sides.find((side) => errors[side]!.origin === "peer");
  if (relayed !== undefined) {
    const peer = relayed === "server" ? "client" : "server";
    const text = errors[relayed]!.text;
    return `${peer}: ${text.replace(new RegExp(`^${peer} failed: `), "")}`;
  }
  return sides.map((side) => `${side}: ${errors[side]!.text}`).join("; ");
}

/** What a run of side hosts needs. */
export interface SidesOptions {
  /** The region the hosts attach (also where dead hosts' blocks are reclaimed). */
  readonly region: JobRegion;
  /** The agent's side, for the embedded default (absent: the agent is another host). */
  readonly agent?: SideHostJob;
  /** The server's side; its agent address is filled in for an embedded agent. */
  readonly server: SideHostJob;
  /** The repository the server writes (its leftovers are removed if the server host vanished). */
  readonly repo?: string;
  /** Which side's progress goes to `onProgress`. */
  readonly progressFrom: "agent" | "server";
  readonly onProgress?: (progress: BackupProgress) => void;
  readonly signal?: AbortSignal;
  /** Drill: terminate the agent host once it reported at least this many bytes. */
  readonly interruptAgentAfterBytes?: number;
  /** Drill: called when the server has stopped at its `pauseAt` writer step. */
  readonly onServerPaused?: (step: WriterStep) => void;
}

/** What both sides reported. */
export interface SidesResult {
  readonly server: ServerSideResult;
  readonly agent?: AgentJobOutcome;
}

/**
 * Runs the hosts of one job to their end.
 *
 * @param options the hosts' jobs, the region, progress, cancel and drills
 * @returns each side's result
 * @throws {BackupJobError} with both sides' accounts, real cause first
 */
export function runSides(options: SidesOptions): Promise<SidesResult> {
  return new Promise<SidesResult>((resolve, reject) => {
    new SidesRun(options, resolve, reject).start();
  });
}

class SidesRun {
  readonly #results: { server?: ServerSideResult; agent?: AgentJobOutcome } = {};
  readonly #errors: Partial<Record<Side, SideError>> = {};
  /** The side a drill terminated on purpose (its end is the drill's, not a crash). */
  #drilled: Side | undefined;
  readonly #links: SideLink[] = [];
  #agentLink: SideLink | undefined;
  #serverLink: SideLink | undefined;
  #hashWorker: Worker | undefined;
  #settled = false;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #cancelReason: string | undefined;
  /** The server's writer passed its commit point (a cancel after it does not undo it). */
  #committed = false;
  #cancelTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #onAbort = () => this.#cancel();

  constructor(
    readonly options: SidesOptions,
    readonly resolve: (result: SidesResult) => void,
    readonly reject: (error: Error) => void,
  ) {}

  start(): void {
    this.options.signal?.addEventListener("abort", this.#onAbort);
    this.#run().catch((error) => this.#finish(error instanceof Error ? error : new Error(error)));
    if (this.options.signal?.aborted) this.#cancel();
  }

  /**
   * Starts both hosts at once (each loads its module graph in parallel with the other), and
   * gives the server host its job once the embedded agent side listens: the server's host is
   * idle until then, and counts as started only from that moment.
   */
  async #run(): Promise<void> {
    let server = this.options.server;
    const agentJob = this.options.agent;
    const agent = agentJob === undefined ? undefined : this.#startHost("client");
    const serverHost = this.#startHost("server");
    if (agent !== undefined) {
      this.#agentLink = agent;
      agent.post({ type: "job", job: agentJob! });
      const first = await agent.next(["listening", "agent-result", "error"], LISTEN_WAIT_MS);
      if (first.type !== "listening") return this.#report("client", first);
      this.#watch("client", agent);
      server = {
        ...server,
        server: { ...server.server!, agent: { host: "127.0.0.1", port: first.port } },
      };
    }
    if (this.#settled || this.#cancelReason !== undefined) return this.#maybeDone();
    this.#serverLink = serverHost;
    serverHost.post({ type: "job", job: server });
    this.#watch("server", serverHost);
  }

  /** Starts a side's host (its job is posted by the caller). */
  #startHost(side: Side): SideLink {
    const link = startSideHost(side);
    this.#links.push(link);
    const progressSide = this.options.progressFrom === "agent" ? "client" : "server";
    link.on("progress", (message) => {
      if (side === progressSide) this.options.onProgress?.(message.progress);
      this.#drill(side, link, message.progress);
    });
    link.on("paused", (message) => this.options.onServerPaused?.(message.step));
    link.on("committed", () => (this.#committed = true));
    link.on("want-hash-worker", () => this.#connectHashWorker(link));
    return link;
  }

  #drill(side: Side, link: SideLink, progress: BackupProgress): void {
    const after = this.options.interruptAgentAfterBytes;
    if (side === "client" && after !== undefined && progress.bytes >= after) {
      this.#drilled = side;
      link.terminate(); // the server must notice on its own, within the region's timeouts
    }
  }

  #watch(side: Side, link: SideLink): void {
    link.next(["agent-result", "server-result", "error"], Number.POSITIVE_INFINITY).then(
      (message) => this.#report(side, message),
      (error: Error) => {
        if (this.#settled) return;
        if (this.#cancelReason !== undefined) return this.#maybeDone();
        if (this.#drilled === side) {
          // As a host whose channels died: the peer's account says how it ended.
          return this.#failed(side, { text: "terminated by a drill", origin: "transport" });
        }
        this.#finish(new BackupJobError(`${side} host ${error.message.replace(/^\S+ host /, "")}`));
      },
    );
  }

  #report(side: Side, message: SideHostReport): void {
    if (message.type === "error") return this.#failed(side, message);
    if (message.type === "server-result") this.#results.server = message.result;
    else if (message.type === "agent-result") {
      this.#results.agent = message.result;
      const outcome = message.result;
      if (outcome.status !== "done") {
        const origin = outcome.status === "no-job" ? "own" : outcome.origin;
        return this.#failed(side, { text: outcome.reason, origin });
      }
    }
    this.#maybeDone();
  }

  #connectHashWorker(link: SideLink): void {
    if (this.#settled) return;
    // Started here: a Worker started inside the host takes about a second to come up.
    const hashWorker = this.#hashWorker ??= new Worker(HASH_WORKER, { type: "module" });
    hashWorker.onerror = (event) => {
      event.preventDefault();
      this.#finish(new BackupJobError(`hash worker crashed: ${event.message}`));
    };
    const channel = new MessageChannel();
    hashWorker.postMessage({ port: channel.port1 }, [channel.port1]);
    link.post({ type: "hash-port", port: channel.port2 }, [channel.port2]);
  }

  #ended(side: Side): boolean {
    const result = side === "server" ? this.#results.server : this.#results.agent;
    return result !== undefined || this.#errors[side] !== undefined;
  }

  #maybeDone(): void {
    const embedded = this.options.agent !== undefined;
    const { server, agent } = this.#results;
    if (server !== undefined && (!embedded || agent?.status === "done")) {
      // Done: a cancel that came too late to stop the commit does not undo it.
      return this.#finish(undefined, { server, agent });
    }
    const allEnded = this.#ended("server") && (!embedded || this.#ended("client"));
    if (this.#cancelReason !== undefined && allEnded) this.#finishCancelled();
  }

  /** A side failed. It often takes its peer down too: wait a moment for the other's account. */
  #failed(side: Side, error: SideError): void {
    this.#errors[side] = error;
    if (this.#cancelReason !== undefined) return this.#maybeDone();
    const embedded = this.options.agent !== undefined;
    const bothEnded = this.#ended("server") && (!embedded || this.#ended("client"));
    if (bothEnded || this.#serverLink === undefined) return this.#failWithBestReason();
    this.#graceTimer ??= setTimeout(() => this.#failWithBestReason(), ERROR_GRACE_MS);
  }

  #failWithBestReason(): void {
    const transport = Object.values(this.#errors).every((error) => error.origin !== "own");
    this.#finish(new BackupJobError(jobErrorMessage(this.#errors), transport));
  }

  /** Asks the hosts to stop as a failure would; they are terminated if they do not in time. */
  #cancel(): void {
    if (this.#settled || this.#cancelReason !== undefined) return;
    const reason = this.options.signal?.reason;
    this.#cancelReason = reason instanceof Error ? reason.message : String(reason ?? "cancelled");
    for (const link of this.#links) link.post({ type: "cancel", reason: this.#cancelReason });
    this.#cancelTimer = setTimeout(() => this.#finishCancelled(), CANCEL_GRACE_MS);
    if (this.#serverLink === undefined) this.#finishCancelled();
  }

  #finishCancelled(): void {
    const outcome = this.#committed
      ? "the cancel came after the snapshot's commit point: the snapshot is committed and kept"
      : "a backup's snapshot was aborted and the repository left as it was";
    this.#finish(new BackupJobError(`job cancelled: ${this.#cancelReason}; ${outcome}`));
  }

  #finish(error: Error | undefined, result?: SidesResult): void {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#graceTimer);
    clearTimeout(this.#cancelTimer);
    for (const link of this.#links) link.terminate();
    this.#hashWorker?.terminate();
    this.options.signal?.removeEventListener("abort", this.#onAbort);
    // A server host that ended without reporting may have left its snapshot half-written.
    const serverVanished = this.#serverLink !== undefined && !this.#ended("server");
    (async () => {
      // Hosts that reported a result disposed their sockets; a failed run may have a dead one.
      if (this.options.region !== null && error !== undefined) {
        await reclaimDeadHosts(this.options.region);
      }
      if (serverVanished && this.options.repo !== undefined) {
        // Loaded only here: a job that ended well needs no repository code in this isolate.
        const { removeLeftovers } = await import("../repository/snapshot_writer.ts");
        await removeLeftovers(this.options.repo).catch(() => {});
      }
    })().then(() => error === undefined ? this.resolve(result!) : this.reject(error));
  }
}

/**
 * After the hosts are gone, frees whatever a dead host left in the region: its blocks become
 * reclaimable once its lease ran out, so this sweeps until no block is held or two leases have
 * passed (another job's live blocks stay theirs).
 *
 * @param region the job's region: shared memory or a region file's path
 */
export async function reclaimDeadHosts(region: SharedArrayBuffer | string): Promise<void> {
  // Loaded only after a failure: a job that ended well maps no region and builds no sockets here.
  const [{ createStorageSockets }, { openRegionFile }] = await Promise.all([
    import("../../adapters/shm.ts"),
    import("../../adapters/region_file.ts"),
  ]);
  const file = typeof region === "string" ? quietly(() => openRegionFile(region)) : undefined;
  const attached = file ?? (typeof region === "string" ? undefined : region);
  if (attached === undefined) return;
  // A region that is not usable (a test passed a broken one) has nothing to free.
  const janitor = quietly(() => createStorageSockets({ region: attached }));
  try {
    if (janitor === undefined) return;
    const deadlineMs = Date.now() + janitor.layout.leaseMs * 2 + 100;
    const held = () => blocksHeldIn(file ?? region as SharedArrayBuffer);
    // Bounded: until nothing is left or the dead hosts' leases have certainly run out.
    while (janitor.reclaim() >= 0 && Date.now() < deadlineMs && held() > 0) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await janitor?.dispose();
    file?.close();
    await file?.closed;
  }
}

/**
 * Control blocks held in a region by anyone (a janitor holds none).
 *
 * @param region shared memory, or an open region file
 * @returns how many blocks are not free
 */
export function blocksHeldIn(region: SharedArrayBuffer | RegionFile): number {
  if (region instanceof SharedArrayBuffer) {
    const usage = usageOfBuffer(region);
    if (!usage.ok) throw new Error(usage.message);
    return usage.value.blocks.length;
  }
  return regionUsage(region.memory, region.layout).blocks.length;
}

/** What `open` returns, or undefined when it throws (a region file that cannot be mapped). */
function quietly<T>(open: () => T): T | undefined {
  try {
    return open();
  } catch {
    return undefined;
  }
}
