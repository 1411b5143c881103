/**
 * The job queue behind the HTTP control endpoint: backups, restores, verifies and retention
 * (forget, prune, consolidate) run one at a
 * time (they share repositories and the storage region), each with a state, progress, a result
 * or an error, and a stream of events. Bounded everywhere: queued jobs, kept history, events
 * kept per job and listeners per job.
 *
 * Runtime-agnostic: the work itself is an injected {@link JobExecutor}.
 *
 * @module
 */

import { z } from "zod";
import type { SameType } from "../core/assert.ts";
import {
  KEEP_COUNT_MAX,
  KEEP_UNLIMITED,
  type KeepRules,
  keepRulesProblem,
} from "../core/backup/retention.ts";

/** Longest path a request may name, in UTF-8 bytes (Linux PATH_MAX). */
export const REQUEST_PATH_BYTES_MAX = 4096;

/** A file-system path in a request: not empty, no NUL byte, at most PATH_MAX bytes. */
export const RequestPathSchema = z.string().min(1)
  .refine((path) => !path.includes("\0"), "contains a NUL byte")
  .refine(
    (path) => new TextEncoder().encode(path).length <= REQUEST_PATH_BYTES_MAX,
    `is longer than ${REQUEST_PATH_BYTES_MAX} bytes`,
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

/** Options of a backup job: the same as the CLI's. */
export const BackupJobSchema = z.strictObject({
  kind: z.literal("backup"),
  source: RequestPathSchema.optional(),
  repo: RequestPathSchema,
  mode: z.enum(["fs", "db"]).default("fs"),
  db: RequestPathSchema.optional(),
  incremental: z.boolean().default(false),
  channel: z.enum(["storage", "network", "auto"]).default("auto"),
  /** Retention after the commit: forget this source's snapshots no rule keeps, then prune. */
  keep: KeepRulesSchema.optional(),
  /** The zone the keep rules count periods in (default: the server's local zone). */
  timeZone: TimeZoneSchema.optional(),
}).superRefine(checkKeep);

/** Options of a restore job. */
export const RestoreJobSchema = z.strictObject({
  kind: z.literal("restore"),
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

/** Any job request. */
export const JobRequestSchema = z.discriminatedUnion("kind", [
  BackupJobSchema,
  RestoreJobSchema,
  VerifyJobSchema,
  ForgetJobSchema,
  PruneJobSchema,
  ConsolidateJobSchema,
]);

/** A validated backup job request (the CLI's options; defaults filled in). */
export interface BackupJobRequest {
  /** Names the job. */
  readonly kind: "backup";
  /** The tree to back up (file-system mode). */
  readonly source?: string | undefined;
  /** The repository. */
  readonly repo: string;
  /** `fs` (default) or `db`. */
  readonly mode: "fs" | "db";
  /** The SQLite database (database mode). */
  readonly db?: string | undefined;
  /** Only what changed since the latest snapshot of the same source (default false). */
  readonly incremental: boolean;
  /** `auto` (default): storage, else the network with the reason; `storage`; `network`. */
  readonly channel: "storage" | "network" | "auto";
  /** Retention after the commit: forget this source's snapshots no rule keeps, then prune. */
  readonly keep?: KeepRules | undefined;
  /** The zone the keep rules count periods in (default: the server's local zone). */
  readonly timeZone?: string | undefined;
}

/** A validated restore job request. */
export interface RestoreJobRequest {
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

/** A validated job request (what {@link JobRequestSchema} accepts, defaults filled in). */
export type JobRequest =
  | BackupJobRequest
  | RestoreJobRequest
  | VerifyJobRequest
  | ForgetJobRequest
  | PruneJobRequest
  | ConsolidateJobRequest;
// `deno check` fails here when the types above and the schema stop describing the same values.
const _requestMatchesSchema: SameType<JobRequest, z.output<typeof JobRequestSchema>> = true;

/**
 * The file-system paths a request names, by field: each is checked against the server's roots
 * when the job is submitted and resolved again when it starts.
 *
 * @param request a validated request
 * @returns `[field, path]` pairs
 */
export function jobPathFields(request: JobRequest): Array<[string, string]> {
  const fields: Array<[string, string | undefined]> = request.kind === "backup"
    ? [["repo", request.repo], ["source", request.source], ["db", request.db]]
    : request.kind === "restore"
    ? [["repo", request.repo], ["target", request.target], ["source", request.source]]
    : request.kind === "forget" || request.kind === "consolidate"
    ? [["repo", request.repo], ["source", request.source]]
    : [["repo", request.repo]];
  return fields.filter((field): field is [string, string] => field[1] !== undefined);
}

/** Where a job is in its life. */
export type JobState = "queued" | "running" | "succeeded" | "failed" | "cancelled";

/** Progress a job reports while it runs. */
export interface JobProgress {
  /** Files done. */
  readonly files: number;
  /** Bytes done. */
  readonly bytes: number;
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
}

const NO_PROGRESS: JobProgress = { files: 0, bytes: 0, storageBytes: 0, networkBytes: 0 };

/**
 * Runs jobs one at a time, in order.
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
  readonly #settled = new Map<string, Promise<void>>();
  #tail: Promise<void> = Promise.resolve();
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
    const run = this.#tail.then(() => this.#run(job));
    this.#tail = run;
    this.#settled.set(id, run);
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
    await this.#settled.get(id);
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
    if (job.state === "queued") this.#setState(job, "cancelled");
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
