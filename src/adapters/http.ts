/**
 * The HTTP control endpoint: a Hono app over lanfree's job queue, repositories, storage
 * occupancy and conformance suites. Platform-neutral (no Deno APIs): everything that touches
 * the file system or the region comes in through {@link ControlServices}, and the jobs and the
 * suites through two small ports ({@link JobsPort}, {@link SuitesPort}), so the app imports
 * neither the product nor the suites, and the same app runs on `Deno.serve` and inside the edge
 * bundle.
 *
 * Every route but `GET /health` needs `Authorization: Bearer <token>` (compared in constant time
 * by Hono's bearer-auth). Errors are `application/problem+json` (RFC 9457) with the right status.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { firstIssue, RequestPathSchema } from "../core/backup/request_path.ts";

/** What a port's validation of a request body gives: the value, or the field and why not. */
export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly field: string; readonly message: string };

/** An event of a job's stream: its state changed, or it reported progress. */
export type JobEventView =
  | { readonly type: "state"; readonly state: string; readonly error?: string }
  | { readonly type: "progress"; readonly progress: unknown };

/** Totals over the jobs kept, for metrics. */
export interface JobTotals {
  /** Jobs per state (`queued`, `running`, `succeeded`, `failed`, `cancelled`). */
  readonly byState: Readonly<Record<string, number>>;
  /** Bytes the jobs moved through the storage region. */
  readonly storageBytes: number;
  /** Bytes the jobs moved over the network. */
  readonly networkBytes: number;
}

/** The jobs, as the app sees them: what `POST/GET/DELETE /v1/jobs` and the events need. */
export interface JobsPort {
  /** Validates a request body (defaults filled in). */
  parse(body: unknown): Parsed<unknown>;
  /** The paths of this machine a valid request names, `[field, path]`: each must lie in the roots. */
  localPaths(request: unknown): ReadonlyArray<readonly [string, string]>;
  /** Queues a valid request: the job as shown, or why the queue is busy. */
  submit(request: unknown): { readonly job: unknown } | { readonly busy: string };
  /** Every job kept, newest first. */
  list(): readonly unknown[];
  /** One job, or undefined. */
  get(id: string): unknown;
  /** Cancels a job: `unknown`, `ended` (nothing to cancel), or `cancelled` (asked to stop). */
  cancel(id: string): "cancelled" | "unknown" | "ended";
  /** Listens to a job's events (past ones first); undefined for an unknown job or too many. */
  subscribe(id: string, listener: (event: JobEventView) => void): (() => void) | undefined;
  /** Totals for metrics. */
  totals(): JobTotals;
}

/** The conformance suites, as the app sees them: what `POST /v1/conformance` needs. */
export interface SuitesPort {
  /**
   * Runs the suites whose name starts with `suite` (all without one).
   *
   * @returns whether all passed and each property's result; undefined when no suite matches
   */
  run(
    options: {
      readonly suite?: string;
      readonly runs?: number;
      readonly seed?: number;
      readonly budgetMs: number;
    },
  ): Promise<{ readonly passed: boolean; readonly results: readonly unknown[] } | undefined>;
}

/** Occupancy of the storage region, for `GET /v1/storage` and metrics. */
export interface StorageOccupancy {
  /** Control blocks in the region, and how many are allocated. */
  readonly controlBlocks: { readonly total: number; readonly inUse: number };
  /** Per STG: its id, its length, the bytes its rings hold, the ports in use. */
  readonly stgs: ReadonlyArray<{
    readonly id: number;
    readonly lengthBytes: number;
    readonly usedBytes: number;
    readonly portsInUse: number;
  }>;
}

/**
 * The control app as its host sees it: a standard fetch handler (Hono's app underneath). Both
 * members are bound functions, so `Deno.serve(app.fetch)` and `{ fetch: app.fetch }` work.
 */
export interface ControlApp {
  /** Answers one request: give it to `Deno.serve`, or call it from a worker's `fetch`. */
  readonly fetch: (request: Request) => Response | Promise<Response>;
  /** Answers a request given as a path (`"/health"`) or URL and an init: for in-process callers. */
  readonly request: (
    input: string | URL | Request,
    init?: RequestInit,
  ) => Response | Promise<Response>;
}

/** What the app needs from its host. */
export interface ControlServices {
  /** The bearer token every route but /health needs. */
  readonly token: string;
  /** Canonical absolute directories requests may touch. */
  readonly roots: readonly string[];
  /** Canonicalises a path (resolving symlinks of the part that exists). */
  resolvePath(path: string): Promise<string>;
  /** The jobs. */
  readonly jobs: JobsPort;
  /** Summaries (no entries) of a repository's snapshots (the repository is inside the roots). */
  listSnapshots(repo: string): Promise<unknown[]>;
  /**
   * One page of a snapshot's entries, or undefined for an unknown snapshot. A host without it
   * (an edge worker with no file system) answers the entries route with 404.
   */
  snapshotEntries?(repo: string, id: string, offset: number, limit: number): Promise<unknown>;
  /** The region's occupancy, or undefined when no region is attached. */
  storageOccupancy(): StorageOccupancy | undefined;
  /** The suites `POST /v1/conformance` may run. */
  readonly suites: SuitesPort;
  /** Largest request body, bytes. Default 64 KiB. */
  readonly bodyBytesMax?: number;
  /** Longest a conformance request may run, ms. Default 20 000. */
  readonly conformanceBudgetMs?: number;
}

/** Most entries `GET /v1/snapshots/:id/entries` returns at once. */
export const ENTRIES_LIMIT_MAX = 1000;

const EntriesQuerySchema = z.strictObject({
  repo: z.string(),
  offset: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
  limit: z.coerce.number().int().min(1).max(ENTRIES_LIMIT_MAX).default(100),
});

const ConformanceRequestSchema = z.strictObject({
  suite: z.string().min(1).optional(),
  runs: z.int().min(1).max(10_000).optional(),
  seed: z.int().optional(),
});

type ProblemStatus = 400 | 401 | 403 | 404 | 409 | 413 | 500 | 503;

/** An `application/problem+json` response. */
function problemResponse(
  status: ProblemStatus,
  title: string,
  detail: string,
  headers?: Headers,
): Response {
  const body = JSON.stringify({ type: "about:blank", title, status, detail });
  const all = new Headers(headers);
  all.set("content-type", "application/problem+json");
  return new Response(body, { status, headers: all });
}

/** Ends the request with a problem response. */
function problem(status: ProblemStatus, title: string, detail: string): never {
  throw new HTTPException(status, { res: problemResponse(status, title, detail) });
}

/** RFC 6750's b64token: what an `Authorization: Bearer` header can carry. */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

function isInside(path: string, root: string): boolean {
  const base = root.endsWith("/") ? root : `${root}/`;
  return path === root || path.startsWith(base);
}

/** A JSON body: 400 for malformed JSON. */
async function jsonBody(c: Context): Promise<unknown> {
  try {
    return await c.req.json();
  } catch {
    problem(400, "Malformed JSON", "the request body is not valid JSON");
  }
}

/** Parses a JSON body: 400 for malformed JSON, 400 naming the field for a schema mismatch. */
async function parseBody<T>(c: Context, schema: z.ZodType<T>): Promise<T> {
  const body = await jsonBody(c);
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const { field, message } = firstIssue(parsed.error);
    problem(400, "Invalid request", `${field}: ${message}`);
  }
  return parsed.data;
}

/**
 * Builds the control app.
 *
 * @param services the token, roots, jobs, repositories, region and suites
 * @returns the app (Hono underneath): `app.fetch` is a standard fetch handler
 * @throws {TypeError} for a token no request could present (empty, blank, not token68)
 */
export function createControlApp(services: ControlServices): ControlApp {
  if (!TOKEN68.test(services.token)) {
    throw new TypeError(
      "the bearer token must be a non-empty token68 (letters, digits, -._~+/ and trailing =): " +
        "no request could present any other",
    );
  }
  const app = new Hono();
  const checkPath = async (path: string): Promise<string> => {
    const valid = RequestPathSchema.safeParse(path);
    if (!valid.success) {
      problem(400, "Invalid path", `path ${valid.error.issues[0]!.message}`);
    }
    let resolved: string;
    try {
      resolved = await services.resolvePath(path);
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      problem(400, "Invalid path", `${path.slice(0, 200)} cannot be resolved: ${why}`);
    }
    if (!services.roots.some((root) => isInside(resolved, root))) {
      problem(403, "Outside the roots", `${path} is outside the directories this server may use`);
    }
    return resolved;
  };

  app.onError((error) => {
    if (!(error instanceof HTTPException)) {
      return problemResponse(
        500,
        "Internal error",
        error instanceof Error ? error.message : String(error),
      );
    }
    const response = error.getResponse();
    if (response.headers.get("content-type")?.includes("problem+json")) return response;
    // Hono's own middleware (bearer-auth) answers in plain text: restate it as a problem.
    const challenge = response.headers.get("www-authenticate");
    const headers = challenge === null ? undefined : new Headers({ "www-authenticate": challenge });
    const title = error.status === 401 ? "Unauthorized" : "Error";
    return problemResponse(error.status as ProblemStatus, title, error.message || title, headers);
  });
  app.notFound(() => problemResponse(404, "Not found", "no such route"));

  app.get("/health", (c) => c.json({ status: "ok" }));
  app.use("*", bearerAuth({ token: services.token }));
  app.use(
    "*",
    bodyLimit({
      maxSize: services.bodyBytesMax ?? 64 * 1024,
      onError: () =>
        problem(
          413,
          "Payload too large",
          `bodies are limited to ${services.bodyBytesMax ?? 65536} bytes`,
        ),
    }),
  );

  app.post("/v1/jobs", async (c) => {
    const parsed = services.jobs.parse(await jsonBody(c));
    if (!parsed.ok) problem(400, "Invalid request", `${parsed.field}: ${parsed.message}`);
    for (const [, path] of services.jobs.localPaths(parsed.value)) await checkPath(path);
    const submitted = services.jobs.submit(parsed.value);
    if ("busy" in submitted) problem(503, "Busy", submitted.busy);
    return c.json(submitted.job as Record<string, unknown>, 202);
  });
  app.get("/v1/jobs", (c) => c.json(services.jobs.list() as unknown[]));
  app.get("/v1/jobs/:id", (c) => {
    const job = services.jobs.get(c.req.param("id"));
    return job === undefined
      ? problem(404, "Unknown job", `no job ${c.req.param("id")}`)
      : c.json(job as Record<string, unknown>);
  });
  app.delete("/v1/jobs/:id", (c) => {
    const id = c.req.param("id");
    const cancelled = services.jobs.cancel(id);
    if (cancelled === "unknown") problem(404, "Unknown job", `no job ${id}`);
    if (cancelled === "ended") problem(409, "Already ended", `job ${id} has already ended`);
    return c.json(services.jobs.get(id) as Record<string, unknown>);
  });
  app.get("/v1/jobs/:id/events", (c) => jobEvents(c, services.jobs, c.req.param("id")));

  app.get("/v1/snapshots", async (c) => {
    const repo = c.req.query("repo");
    if (repo === undefined) problem(400, "Invalid request", "repo: query parameter is required");
    return c.json(await services.listSnapshots(await checkPath(repo)));
  });
  app.get("/v1/snapshots/:id/entries", async (c) => {
    const parsed = EntriesQuerySchema.safeParse(c.req.query());
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      problem(400, "Invalid request", `${issue.path.join(".") || "query"}: ${issue.message}`);
    }
    const { repo, offset, limit } = parsed.data;
    const id = c.req.param("id");
    if (services.snapshotEntries === undefined) {
      problem(404, "Not offered", "this server does not serve snapshot entries");
    }
    const page = await services.snapshotEntries(await checkPath(repo), id, offset, limit);
    return page === undefined
      ? problem(404, "Unknown snapshot", `no snapshot ${id.slice(0, 100)} in ${repo}`)
      : c.json(page);
  });
  app.get("/v1/storage", (c) => {
    const occupancy = services.storageOccupancy();
    return occupancy === undefined
      ? problem(404, "No region", "no storage region is attached")
      : c.json(occupancy);
  });
  app.post("/v1/conformance", async (c) => {
    const request = await parseBody(c, ConformanceRequestSchema);
    const ran = await services.suites.run({
      ...request,
      budgetMs: services.conformanceBudgetMs ?? 20_000,
    });
    if (ran === undefined) problem(404, "Unknown suite", `no suite named ${request.suite}`);
    return c.json(ran);
  });
  app.get(
    "/metrics",
    (c) => c.text(metricsText(services), 200, { "content-type": "text/plain; version=0.0.4" }),
  );
  return app;
}

function jobEvents(c: Context, jobs: JobsPort, id: string): Response {
  if (jobs.get(id) === undefined) problem(404, "Unknown job", `no job ${id}`);
  return streamSSE(c, async (stream) => {
    const queued: JobEventView[] = [];
    let wake: (() => void) | undefined;
    const unsubscribe = jobs.subscribe(id, (event) => {
      queued.push(event);
      wake?.();
    });
    if (unsubscribe === undefined) return;
    stream.onAbort(() => wake?.());
    try {
      let sent = 0;
      // Bounded: a job ends, and each event is written once.
      for (let turns = 0; !stream.aborted && turns < 1_000_000; turns++) {
        const event = queued.shift();
        if (event === undefined) {
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        await stream.writeSSE({
          event: event.type,
          data: JSON.stringify(event),
          id: String(sent++),
        });
        if (event.type === "state" && ["succeeded", "failed", "cancelled"].includes(event.state)) {
          break;
        }
      }
    } finally {
      unsubscribe();
    }
  });
}

/** Prometheus text exposition of jobs, channel bytes and region occupancy. */
export function metricsText(services: Pick<ControlServices, "jobs" | "storageOccupancy">): string {
  const totals = services.jobs.totals();
  const lines = [
    "# HELP lanfree_channel_bytes Bytes moved by jobs, per channel.",
    "# TYPE lanfree_channel_bytes counter",
    `lanfree_channel_bytes{channel="storage"} ${totals.storageBytes}`,
    `lanfree_channel_bytes{channel="network"} ${totals.networkBytes}`,
    "# HELP lanfree_jobs Jobs kept by the server, per state.",
    "# TYPE lanfree_jobs gauge",
    ...Object.entries(totals.byState).map(([state, count]) =>
      `lanfree_jobs{state="${state}"} ${count}`
    ),
    "# HELP lanfree_job_failures Jobs that failed.",
    "# TYPE lanfree_job_failures gauge",
    `lanfree_job_failures ${totals.byState.failed}`,
  ];
  const occupancy = services.storageOccupancy();
  if (occupancy !== undefined) {
    lines.push(
      "# HELP lanfree_control_blocks_in_use Control blocks allocated in the region.",
      "# TYPE lanfree_control_blocks_in_use gauge",
      `lanfree_control_blocks_in_use ${occupancy.controlBlocks.inUse}`,
      "# HELP lanfree_control_blocks Control blocks in the region.",
      "# TYPE lanfree_control_blocks gauge",
      `lanfree_control_blocks ${occupancy.controlBlocks.total}`,
    );
  }
  return `${lines.join("\n")}\n`;
}
