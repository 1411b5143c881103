/**
 * The job queue behind the HTTP control endpoint, and the one schema of job options (used by the
 * CLI, the endpoint and the job runner alike): backups, restores, verifies, validations and
 * retention (forget, prune, consolidate), each with a state, progress, a result or an error, and
 * a stream of events. Bounded everywhere: queued jobs, kept history, events
 * kept per job and listeners per job.
 *
 * Runtime-agnostic: the work itself is an injected {@link JobExecutor}.
 *
 * @module
 */

import { z } from "zod";
import type { SameType } from "../../core/assert.ts";
import type { JobsPort } from "../../adapters/http.ts";
import {
  KEEP_COUNT_MAX,
  KEEP_UNLIMITED,
  type KeepRules,
  keepRulesProblem,
} from "../../core/backup/retention.ts";

export { REQUEST_PATH_BYTES_MAX, RequestPathSchema } from "../../core/backup/request_path.ts";
import { firstIssue, RequestPathSchema } from "../../core/backup/request_path.ts";

/**
 * An agent's address: `host:port` (an IPv6 host in brackets), the agent's well-known port.
 * The host is a name or an address of at most 253 characters.
 */
export const AgentAddressSchema = z.string().regex(
  /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):([1-9][0-9]{0,4})$/,
  "must be host:port (the agent's --listen address)",
).refine(
  (address) => Number(address.slice(address.lastIndexOf(":") + 1)) <= 65534,
  "port must be at most 65534 (the file-system flow also uses the next port)",
);

const keepCount = z.int().min(KEEP_UNLIMITED).max(KEEP_COUNT_MAX).optional();

/** Keep rules in a request: restic's, counts (-1 for unlimited) and a `within` duration. */
export const KeepRulesSchema = z.strictObject({
  last: keepCount,
  hourly: keepCount,
  daily: keepCount,
  weekly: keepCount,
  monthly: keepCount,
  yearly: keepCount,
  within: z.string().min(1).max(64).optional(),
});

/** An IANA time zone name (checked against the runtime's zone data). */
const TimeZoneSchema = z.string().min(1).max(64);

/** Refuses keep rules or a time zone the policy cannot apply, naming the problem. */
function checkKeep(
  value: { keep?: KeepRules | undefined; timeZone?: string | undefined },
  context: z.RefinementCtx,
): void {
  if (value.keep === undefined) return;
  const problem = keepRulesProblem(value.keep, value.timeZone ?? "UTC");
  if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
}

const flowFields = {
  /** Which agent does the client's part (the data host), or absent for this machine. */
  agent: AgentAddressSchema.optional(),
  mode: z.enum(["fs", "db"], { error: "must be fs or db" }).default("fs"),
  channel: z.enum(["storage", "network", "auto"], {
    error: "must be auto, storage or network",
  }).default("auto"),
};

/** `mode: "db"` needs `db` (the database file) and `mode: "fs"` takes none. */
function checkDatabase(
  options: { readonly mode: "fs" | "db"; readonly db?: string | undefined },
  context: z.RefinementCtx,
): void {
  if (options.mode === "db" && options.db === undefined) {
    context.addIssue({
      code: "custom",
      path: ["db"],
      message: "is needed with mode db (the database file)",
    });
  }
  if (options.mode === "fs" && options.db !== undefined) {
    context.addIssue({ code: "custom", path: ["db"], message: "is only for mode db" });
  }
}

/**
 * Options of a backup job: one schema for the CLI, the HTTP endpoint and the job runner. With
 * `agent`, `source` and `db` are paths on the agent (checked against the agent's roots there)
 * and `repo` a path here.
 */
export const BackupJobSchema = z.strictObject({
  kind: z.literal("backup"),
  ...flowFields,
  source: RequestPathSchema.optional(),
  repo: RequestPathSchema,
  db: RequestPathSchema.optional(),
  incremental: z.boolean().default(false),
  /** Retention after the commit: forget this source's snapshots no rule keeps, then prune. */
  keep: KeepRulesSchema.optional(),
  /** The zone the keep rules count periods in (default: the server's local zone). */
  timeZone: TimeZoneSchema.optional(),
}).superRefine((value, context) => {
  checkDatabase(value, context);
  checkKeep(value, context);
});

/**
 * Options of a restore job. With `agent`, `target` is a path on the agent and the snapshot
 * travels over the job's channels (`mode` picks the handshake, `channel` the data path);
 * without, the restore reads the repository directly.
 */
export const RestoreJobSchema = z.strictObject({
  kind: z.literal("restore"),
  ...flowFields,
  repo: RequestPathSchema,
  snapshot: z.string().min(1).default("latest"),
  /** With `latest`: the newest snapshot of this source (else the newest of any source). */
  source: RequestPathSchema.optional(),
  target: RequestPathSchema,
  path: RequestPathSchema.optional(),
  overwrite: z.boolean().default(false),
  preservePermissions: z.boolean().default(false),
});

/** Options of a verify job. */
export const VerifyJobSchema = z.strictObject({
  kind: z.literal("verify"),
  repo: RequestPathSchema,
  snapshot: z.string().min(1).optional(),
});

/** Options of a forget job: the same as the CLI's. */
export const ForgetJobSchema = z.strictObject({
  kind: z.literal("forget"),
  repo: RequestPathSchema,
  keep: KeepRulesSchema,
  /** Only the snapshots of this source. */
  source: RequestPathSchema.optional(),
  timeZone: TimeZoneSchema.optional(),
  dryRun: z.boolean().default(false),
  /** Prune afterwards. */
  prune: z.boolean().default(false),
}).superRefine(checkKeep);

/** Options of a prune job. */
export const PruneJobSchema = z.strictObject({
  kind: z.literal("prune"),
  repo: RequestPathSchema,
  dryRun: z.boolean().default(false),
  maxUnusedPercent: z.number().min(0).max(100).optional(),
});

/** Options of a consolidate job. */
export const ConsolidateJobSchema = z.strictObject({
  kind: z.literal("consolidate"),
  repo: RequestPathSchema,
  snapshot: z.string().min(1),
  /** With `latest`: the newest snapshot of this source. */
  source: RequestPathSchema.optional(),
});

/** Options of a validation of the paths to an agent (`deno task validate`). */
export const ValidateJobSchema = z.strictObject({
  kind: z.literal("validate"),
  agent: AgentAddressSchema,
});

/** Any job request. */
export const JobRequestSchema = z.discriminatedUnion("kind", [
  BackupJobSchema,
  RestoreJobSchema,
  VerifyJobSchema,
  ForgetJobSchema,
  PruneJobSchema,
  ConsolidateJobSchema,
  ValidateJobSchema,
]);

/** The handshake and data path a job uses, with the agent doing the client's part, if any. */
export interface FlowOptions {
  /** The agent (`host:port`) doing the client's part, or absent for this machine. */
  readonly agent?: string | undefined;
  /** `fs` (default): the file-system flow; `db`: the database flow. */
  readonly mode: "fs" | "db";
  /** `auto` (default): storage, else the network with the reason; `storage`; `network`. */
  readonly channel: "storage" | "network" | "auto";
}

/** A validated backup job request (the CLI's options; defaults filled in). */
export interface BackupJobRequest extends FlowOptions {
  /** Names the job. */
  readonly kind: "backup";
  /** The tree to back up (file-system mode). */
  readonly source?: string | undefined;
  /** The repository. */
  readonly repo: string;
  /** The SQLite database (database mode). */
  readonly db?: string | undefined;
  /** Only what changed since the latest snapshot of the same source (default false). */
  readonly incremental: boolean;
  /** Retention after the commit: forget this source's snapshots no rule keeps, then prune. */
  readonly keep?: KeepRules | undefined;
  /** The zone the keep rules count periods in (default: the server's local zone). */
  readonly timeZone?: string | undefined;
}

/** A validated restore job request. */
export interface RestoreJobRequest extends FlowOptions {
  /** Names the job. */
  readonly kind: "restore";
  /** The repository. */
  readonly repo: string;
  /** A snapshot id, or `latest` (default). */
  readonly snapshot: string;
  /** With `latest`: the newest snapshot of this source (else the newest of any source). */
  readonly source?: string | undefined;
  /** The directory to restore into. */
  readonly target: string;
  /** Only this path of the snapshot. */
  readonly path?: string | undefined;
  /** Replace existing files (default false). */
  readonly overwrite: boolean;
  /** Keep setuid, setgid and sticky bits, as GNU tar's `--same-permissions` (default false). */
  readonly preservePermissions: boolean;
}

/** A validated verify job request. */
export interface VerifyJobRequest {
  /** Names the job. */
  readonly kind: "verify";
  /** The repository. */
  readonly repo: string;
  /** One snapshot; every snapshot when absent. */
  readonly snapshot?: string | undefined;
}

/** A validated forget job request. */
export interface ForgetJobRequest {
  /** Names the job. */
  readonly kind: "forget";
  /** The repository. */
  readonly repo: string;
  /** The keep rules (none: nothing is removed). */
  readonly keep: KeepRules;
  /** Only the snapshots of this source. */
  readonly source?: string | undefined;
  /** The zone periods are counted in (default: the server's local zone). */
  readonly timeZone?: string | undefined;
  /** Decide and report only (default false). */
  readonly dryRun: boolean;
  /** Prune afterwards (default false). */
  readonly prune: boolean;
}

/** A validated prune job request. */
export interface PruneJobRequest {
  /** Names the job. */
  readonly kind: "prune";
  /** The repository. */
  readonly repo: string;
  /** Decide and report only (default false). */
  readonly dryRun: boolean;
  /** Percent of an archive that may be unused before it is repacked (default 5). */
  readonly maxUnusedPercent?: number | undefined;
}

/** A validated consolidate job request. */
export interface ConsolidateJobRequest {
  /** Names the job. */
  readonly kind: "consolidate";
  /** The repository. */
  readonly repo: string;
  /** A snapshot id, or `latest`. */
  readonly snapshot: string;
  /** With `latest`: the newest snapshot of this source. */
  readonly source?: string | undefined;
}

/** A validated validation request. */
export interface ValidateJobRequest {
  /** Names the job. */
  readonly kind: "validate";
  /** The agent whose paths are checked. */
  readonly agent: string;
}

/** A validated job request (what {@link JobRequestSchema} accepts, defaults filled in). */
export type JobRequest =
  | BackupJobRequest
  | RestoreJobRequest
  | VerifyJobRequest
  | ForgetJobRequest
  | PruneJobRequest
  | ConsolidateJobRequest
  | ValidateJobRequest;
// `deno check` fails here when the types above and the schema stop describing the same values.
const _requestMatchesSchema: SameType<JobRequest, z.output<typeof JobRequestSchema>> = true;

/**
 * The paths on this machine a request names, by field: each is checked against the server's
 * roots when the job is submitted and resolved again when it starts. With an agent, the source,
 * database and target are the agent's, which checks them against its own roots.
 *
 * @param request a validated request
 * @returns `[field, path]` pairs
 */
export function jobPathFields(request: JobRequest): Array<[string, string]> {
  const remote = "agent" in request && request.agent !== undefined;
  const fields: Array<[string, string | undefined]> = request.kind === "backup"
    ? [
      ["repo", request.repo],
      ...(remote ? [] : [
        ["source", request.source],
        ["db", request.db],
      ] as Array<[string, string | undefined]>),
    ]
    : request.kind === "restore"
    ? [
      ["repo", request.repo],
      ...(remote ? [] : [
        ["target", request.target],
        ["source", request.source],
      ] as Array<[string, string | undefined]>),
    ]
    : request.kind === "forget" || request.kind === "consolidate"
    ? [["repo", request.repo], ["source", request.source]]
    : request.kind === "validate"
    ? []
    : [["repo", request.repo]];
  return fields.filter((field): field is [string, string] => field[1] !== undefined);
}

/** Where a job is in its life. */
export type JobState = "queued" | "running" | "succeeded" | "failed" | "cancelled";

/** Progress a job reports while it runs: what the CLI's progress bar shows. */
export interface JobProgress {
  /** Files done. */
  readonly files: number;
  /** Bytes done. */
  readonly bytes: number;
  /** Bytes planned (what `bytes` grows toward), or 0 while unknown. */
  readonly totalBytes: number;
  /** Bytes that went through the storage region. */
  readonly storageBytes: number;
  /** Bytes that went over the network. */
  readonly networkBytes: number;
}

/** One job, as the API shows it. */
export interface JobRecord {
  /** The job's id (unique in this queue). */
  readonly id: string;
  /** What was asked for. */
  readonly request: JobRequest;
  /** Where the job is. */
  state: JobState;
  /** When it was submitted, on the queue's clock. */
  readonly createdMs: number;
  /** When it started running. */
  startedMs?: number;
  /** When it ended. */
  endedMs?: number;
  /** The latest progress it reported. */
  progress: JobProgress;
  /** What the executor returned, once succeeded. */
  result?: unknown;
  /** The failure, or for a cancelled job the reason and what became of its work. */
  error?: string;
  /** When a cancel was asked for; a job whose work completed anyway still ends `succeeded`. */
  cancelRequestedMs?: number;
}

/** What a job emits. */
export type JobEvent =
  | { readonly type: "state"; readonly state: JobState; readonly error?: string }
  | { readonly type: "progress"; readonly progress: JobProgress };

/** Runs one job. Must honour `signal` and report progress through `report`. */
export type JobExecutor = (
  request: JobRequest,
  context: { readonly signal: AbortSignal; readonly report: (progress: JobProgress) => void },
) => Promise<unknown>;

/**
 * A job that failed but has a result to show (a restore that wrote all but some files lists
 * them): the queue records both the error and the result.
 */
export class JobFailure extends Error {
  /**
   * Makes the failure.
   *
   * @param message why the job failed
   * @param result what it did nonetheless
   */
  constructor(message: string, readonly result: unknown) {
    super(message);
    this.name = "JobFailure";
  }
}

/** Raised when the queue refuses a job. */
export class JobQueueFullError extends Error {
  /**
   * Makes the error.
   *
   * @param queuedMax the queue's bound, for the message
   */
  constructor(queuedMax: number) {
    super(`the job queue is full (${queuedMax} jobs waiting)`);
    this.name = "JobQueueFullError";
  }
}

/** Limits of a {@link JobQueue}. */
export interface JobQueueLimits {
  /** Most jobs waiting to run (default 16); more are refused with JobQueueFullError. */
  readonly queuedMax?: number;
  /** Most ended jobs kept (default 100); the oldest are forgotten. */
  readonly historyMax?: number;
  /** Most events kept per job (default 256). */
  readonly eventsPerJobMax?: number;
  /** Most event listeners per job (default 16). */
  readonly listenersPerJobMax?: number;
  /** Most jobs running at once (default 1: one after the other). */
  readonly runningMax?: number;
}

const NO_PROGRESS: JobProgress = {
  files: 0,
  bytes: 0,
  totalBytes: 0,
  storageBytes: 0,
  networkBytes: 0,
};

/**
 * Runs jobs in order, one at a time unless `runningMax` allows more at once.
 *
 * @example
 * ```ts
 * import { JobQueue } from "./jobs.ts";
 * const queue = new JobQueue(async () => ({ ok: true }), () => Date.now());
 * const job = queue.submit({ kind: "verify", repo: "/tmp/repo" });
 * await queue.settled(job.id);
 * console.assert(queue.get(job.id)?.state === "succeeded");
 * ```
 */
export class JobQueue {
  readonly #execute: JobExecutor;
  readonly #nowMs: () => number;
  readonly #limits: Required<JobQueueLimits>;
  readonly #jobs = new Map<string, JobRecord>();
  readonly #events = new Map<string, JobEvent[]>();
  readonly #listeners = new Map<string, Set<(event: JobEvent) => void>>();
  readonly #controllers = new Map<string, AbortController>();
  readonly #settled = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  readonly #waiting: JobRecord[] = [];
  #running = 0;
  #nextId = 1;

  /**
   * Makes an empty queue.
   *
   * @param execute runs one job
   * @param nowMs the clock
   * @param limits queue, history and event bounds
   */
  constructor(execute: JobExecutor, nowMs: () => number, limits: JobQueueLimits = {}) {
    this.#execute = execute;
    this.#nowMs = nowMs;
    this.#limits = {
      queuedMax: limits.queuedMax ?? 16,
      historyMax: limits.historyMax ?? 100,
      eventsPerJobMax: limits.eventsPerJobMax ?? 256,
      listenersPerJobMax: limits.listenersPerJobMax ?? 16,
      runningMax: limits.runningMax ?? 1,
    };
  }

  /** Queues a job; throws {@link JobQueueFullError} when too many wait. */
  submit(request: JobRequest): JobRecord {
    const waiting = [...this.#jobs.values()].filter((job) => job.state === "queued").length;
    if (waiting >= this.#limits.queuedMax) throw new JobQueueFullError(this.#limits.queuedMax);
    const id = `job-${this.#nextId++}`;
    const job: JobRecord = {
      id,
      request,
      state: "queued",
      createdMs: this.#nowMs(),
      progress: NO_PROGRESS,
    };
    this.#jobs.set(id, job);
    this.#events.set(id, []);
    this.#controllers.set(id, new AbortController());
    this.#forgetOldest();
    let resolve = () => {};
    const promise = new Promise<void>((r) => (resolve = r));
    this.#settled.set(id, { promise, resolve });
    this.#waiting.push(job);
    this.#startWaiting();
    return job;
  }

  /** Every job kept, newest first. */
  list(): JobRecord[] {
    return [...this.#jobs.values()].reverse();
  }

  /** One job, or undefined. */
  get(id: string): JobRecord | undefined {
    return this.#jobs.get(id);
  }

  /** Resolves when the job has ended (or at once for an unknown id). */
  async settled(id: string): Promise<void> {
    await this.#settled.get(id)?.promise;
  }

  /** Starts waiting jobs while fewer than `runningMax` run (bounded by the queue). */
  #startWaiting(): void {
    while (this.#running < this.#limits.runningMax && this.#waiting.length > 0) {
      const job = this.#waiting.shift()!;
      if (job.state !== "queued") {
        this.#settled.get(job.id)?.resolve();
        continue;
      }
      this.#running++;
      this.#run(job).finally(() => {
        this.#running--;
        this.#settled.get(job.id)?.resolve();
        this.#startWaiting();
      });
    }
  }

  /**
   * Cancels a queued job, or asks a running one to stop (its executor sees `signal` abort, and
   * the job ends `cancelled` when the executor gives up, `succeeded` if the work completed).
   *
   * @returns false when the job is unknown or already ended
   */
  cancel(id: string): boolean {
    const job = this.#jobs.get(id);
    if (job === undefined || isEnded(job.state)) return false;
    job.cancelRequestedMs ??= this.#nowMs();
    this.#controllers.get(id)?.abort(new Error("cancelled by request"));
    if (job.state === "queued") {
      this.#setState(job, "cancelled");
      const at = this.#waiting.indexOf(job);
      if (at >= 0) this.#waiting.splice(at, 1);
      this.#settled.get(id)?.resolve();
    }
    return true;
  }

  /**
   * Listens to a job's events: the ones so far, then new ones.
   *
   * @returns an unsubscribe function, or undefined for an unknown job or too many listeners
   */
  subscribe(id: string, listener: (event: JobEvent) => void): (() => void) | undefined {
    const past = this.#events.get(id);
    if (past === undefined) return undefined;
    const listeners = this.#listeners.get(id) ?? new Set();
    if (listeners.size >= this.#limits.listenersPerJobMax) return undefined;
    for (const event of past) listener(event);
    listeners.add(listener);
    this.#listeners.set(id, listeners);
    return () => listeners.delete(listener);
  }

  /** Totals over the jobs kept, for metrics. */
  totals(): { byState: Record<JobState, number>; storageBytes: number; networkBytes: number } {
    const byState: Record<JobState, number> = {
      queued: 0,
      running: 0,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
    };
    let storageBytes = 0;
    let networkBytes = 0;
    for (const job of this.#jobs.values()) {
      byState[job.state]++;
      storageBytes += job.progress.storageBytes;
      networkBytes += job.progress.networkBytes;
    }
    return { byState, storageBytes, networkBytes };
  }

  async #run(job: JobRecord): Promise<void> {
    if (job.state !== "queued") return;
    const controller = this.#controllers.get(job.id)!;
    job.startedMs = this.#nowMs();
    this.#setState(job, "running");
    try {
      const report = (progress: JobProgress) => {
        job.progress = progress;
        this.#emit(job.id, { type: "progress", progress });
      };
      job.result = await this.#execute(job.request, { signal: controller.signal, report });
      // Work that completed is reported as done, even when a cancel came too late to stop it.
      this.#setState(job, "succeeded");
    } catch (error) {
      job.error = error instanceof Error ? error.message : String(error);
      if (error instanceof JobFailure) job.result = error.result;
      this.#setState(job, controller.signal.aborted ? "cancelled" : "failed");
    } finally {
      job.endedMs = this.#nowMs();
    }
  }

  #setState(job: JobRecord, state: JobState): void {
    job.state = state;
    this.#emit(job.id, {
      type: "state",
      state,
      ...(job.error === undefined ? {} : { error: job.error }),
    });
  }

  #emit(id: string, event: JobEvent): void {
    const events = this.#events.get(id);
    if (events === undefined) return;
    events.push(event);
    // Keep the first event and the latest ones.
    if (events.length > this.#limits.eventsPerJobMax) events.splice(1, 1);
    for (const listener of this.#listeners.get(id) ?? []) listener(event);
  }

  #forgetOldest(): void {
    for (const [id, job] of this.#jobs) {
      if (this.#jobs.size <= this.#limits.historyMax) return;
      if (!isEnded(job.state)) continue;
      this.#jobs.delete(id);
      this.#events.delete(id);
      this.#listeners.delete(id);
      this.#controllers.delete(id);
      this.#settled.delete(id);
    }
  }
}

/** True for the states a job never leaves. */
export function isEnded(state: JobState): boolean {
  return state === "succeeded" || state === "failed" || state === "cancelled";
}

/**
 * The HTTP app's port onto a job queue: requests validated by {@link JobRequestSchema}, the
 * paths of this machine they name ({@link jobPathFields}), and the queue's records and events.
 *
 * @param queue the job queue
 * @returns the port for `ControlServices.jobs`
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { JobQueue, jobsPort } from "./jobs.ts";
 * const port = jobsPort(new JobQueue(async () => ({}), () => Date.now()));
 * const parsed = port.parse({ kind: "backup", repo: "/r", mode: "db" });
 * assert.ok(!parsed.ok && parsed.field === "db");
 * ```
 */
export function jobsPort(queue: JobQueue): JobsPort {
  return {
    parse(body) {
      const parsed = JobRequestSchema.safeParse(body);
      return parsed.success
        ? { ok: true, value: parsed.data }
        : { ok: false, ...firstIssue(parsed.error) };
    },
    localPaths: (request) => jobPathFields(request as JobRequest),
    submit(request) {
      try {
        return { job: queue.submit(request as JobRequest) };
      } catch (error) {
        if (error instanceof JobQueueFullError) return { busy: error.message };
        throw error;
      }
    },
    list: () => queue.list(),
    get: (id) => queue.get(id),
    cancel(id) {
      if (queue.get(id) === undefined) return "unknown";
      return queue.cancel(id) ? "cancelled" : "ended";
    },
    subscribe: (id, listener) => queue.subscribe(id, listener),
    totals: () => queue.totals(),
  };
}
