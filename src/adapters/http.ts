/**
 * The HTTP control endpoint: a Hono app over lanfree's job queue, repositories, storage
 * occupancy and conformance suites. Platform-neutral (no Deno APIs): everything that touches
 * the file system or the region comes in through {@link ControlServices}, and the jobs and the
 * suites through two small ports ({@link JobsPort}, {@link SuitesPort}), so the app imports
 * neither the product nor the suites, and the same app runs on `Deno.serve` and inside the edge
 * bundle.
 *
 * Every route but `GET /health`, the dashboard page and its login needs `Authorization: Bearer
 * <token>` (compared in constant time) or a browser session from the login form (with its CSRF
 * token on state-changing requests; see `http_auth.ts`). The routes are sub-apps mounted with
 * `app.route()`: the API under `/v1` (`http_routes.ts`), login and logout (`http_auth.ts`), the
 * page and its script (`dashboard/page_routes.ts`). Errors are `application/problem+json`
 * (RFC 9457) with the right status, bodies and queries validated by `@hono/zod-validator`
 * through one hook (`http_problem.ts`).
 *
 * @module
 */

import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { authRoutes, type AuthVariables, requireAuth } from "./http_auth.ts";
import { onProblem, problem, problemResponse } from "./http_problem.ts";
import { SessionStore } from "./http_session.ts";
import { LoginLimiter } from "./http_login_limit.ts";
import { apiRoutes } from "./http_routes.ts";
import { pageRoutes } from "./dashboard/page_routes.ts";

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
  /**
   * Summaries (no entries) of a repository's snapshots (the repository is inside the roots), or
   * undefined when no repository is there (404).
   */
  listSnapshots(repo: string): Promise<unknown[] | undefined>;
  /**
   * One page of a snapshot's entries, or undefined for an unknown snapshot. A host without it
   * (an edge worker with no file system) answers the entries route with 404.
   */
  snapshotEntries?(repo: string, id: string, offset: number, limit: number): Promise<unknown>;
  /** The region's occupancy, or undefined when no region is attached. */
  storageOccupancy(): StorageOccupancy | undefined;
  /**
   * What `deno task region show` reports about the region (blocks, STGs, host slots), for
   * `GET /v1/region` and the dashboard's map; undefined (404) when no region is attached. A
   * host without it answers the route with 404.
   */
  regionReport?(): unknown;
  /** The dashboard's bundled client script (`GET /assets/dashboard.js`); 404 without it. */
  readonly dashboardScript?: string;
  /** The clock of browser sessions, ms. Default `Date.now`. */
  readonly nowMs?: () => number;
  /** Secure random bytes for session ids and CSRF tokens. Default `crypto.getRandomValues`. */
  readonly randomBytes?: (bytes: Uint8Array) => Uint8Array;
  /** A browser session unused this long ends, ms. Default 30 minutes. */
  readonly sessionIdleMs?: number;
  /** A browser session ends this long after login, ms. Default 12 hours. */
  readonly sessionLifetimeMs?: number;
  /** `POST /login` attempts one client address may make per window (then 429). Default 10. */
  readonly loginAttemptsMax?: number;
  /** The login limit's window, ms. Default 60 000. */
  readonly loginWindowMs?: number;
  /** Most client addresses the login limit tracks at once. Default 10 000. */
  readonly loginAddressesMax?: number;
  /** The suites `POST /v1/conformance` may run. */
  readonly suites: SuitesPort;
  /** Largest request body, bytes. Default 64 KiB. */
  readonly bodyBytesMax?: number;
  /** Longest a conformance request may run, ms. Default 20 000. */
  readonly conformanceBudgetMs?: number;
}

export { ENTRIES_LIMIT_MAX } from "./http_routes.ts";

/** RFC 6750's b64token: what an `Authorization: Bearer` header can carry. */
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

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
  const sessions = new SessionStore({
    nowMs: services.nowMs ?? (() => Date.now()),
    randomBytes: services.randomBytes ?? ((bytes) => crypto.getRandomValues(bytes)),
    idleMs: services.sessionIdleMs,
    lifetimeMs: services.sessionLifetimeMs,
  });
  const loginLimiter = new LoginLimiter({
    nowMs: services.nowMs ?? (() => Date.now()),
    attemptsMax: services.loginAttemptsMax,
    windowMs: services.loginWindowMs,
    addressesMax: services.loginAddressesMax,
  });
  const bodyBytesMax = services.bodyBytesMax ?? 64 * 1024;
  const app = new Hono<{ Variables: AuthVariables }>();
  app.onError(onProblem);
  app.notFound(() => problemResponse(404, "Not found", "no such route"));
  app.use(
    "*",
    bodyLimit({
      maxSize: bodyBytesMax,
      onError: () =>
        problem(413, "Payload too large", `bodies are limited to ${bodyBytesMax} bytes`),
    }),
  );
  app.get("/health", (c) => c.json({ status: "ok" }));
  app.route("/", pageRoutes(services, sessions));
  app.route("/", authRoutes(services.token, sessions, loginLimiter));
  app.use("/v1/*", requireAuth(services.token, sessions));
  app.route("/v1", apiRoutes(services));
  app.get(
    "/metrics",
    requireAuth(services.token, sessions),
    (c) => c.text(metricsText(services), 200, { "content-type": "text/plain; version=0.0.4" }),
  );
  return app;
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
