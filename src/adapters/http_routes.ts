/**
 * The control endpoint's API, mounted at `/v1` behind the auth middleware: jobs (and their
 * event streams), snapshots, the region's occupancy and report, and the conformance suites.
 * Each group is a sub-app; bodies and queries are validated by `@hono/zod-validator` through
 * the one hook of `http_problem.ts`.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context, MiddlewareHandler } from "hono";
import { streamSSE } from "hono/streaming";
import { z } from "zod";
import { RequestPathSchema } from "../core/backup/request_path.ts";
import type { ControlServices, JobEventView, JobsPort } from "./http.ts";
import { problem, validated } from "./http_problem.ts";

/** Most entries `GET /v1/snapshots/:id/entries` returns at once. */
export const ENTRIES_LIMIT_MAX = 1000;

const SnapshotsQuerySchema = z.object({ repo: z.string({ error: "query parameter is required" }) });

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

function isInside(path: string, root: string): boolean {
  const base = root.endsWith("/") ? root : `${root}/`;
  return path === root || path.startsWith(base);
}

/** Checks a path of this machine a request names: valid, resolvable, inside the roots. */
type PathCheck = (path: string) => Promise<string>;

function pathCheck(services: ControlServices): PathCheck {
  return async (path) => {
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
}

/**
 * The port's own validation as a schema, so job bodies go through the one validator hook too:
 * the port's complaint becomes an issue at the field it names.
 */
function portSchema(jobs: JobsPort) {
  return z.unknown().transform((body, context) => {
    const parsed = jobs.parse(body);
    if (parsed.ok) return parsed.value;
    context.addIssue({ code: "custom", path: [parsed.field], message: parsed.message });
    return z.NEVER;
  });
}

function jobRoutes(jobs: JobsPort, checkPath: PathCheck): Hono {
  const app = new Hono();
  app.post("/", validated("json", portSchema(jobs)), async (c) => {
    const request: unknown = c.req.valid("json");
    for (const [, path] of jobs.localPaths(request)) await checkPath(path);
    const submitted = jobs.submit(request);
    if ("busy" in submitted) problem(503, "Busy", submitted.busy);
    return c.json(submitted.job as Record<string, unknown>, 202);
  });
  app.get("/", (c) => c.json(jobs.list() as unknown[]));
  app.get("/:id", (c) => {
    const job = jobs.get(c.req.param("id"));
    return job === undefined
      ? problem(404, "Unknown job", `no job ${c.req.param("id")}`)
      : c.json(job as Record<string, unknown>);
  });
  app.delete("/:id", (c) => {
    const id = c.req.param("id");
    const cancelled = jobs.cancel(id);
    if (cancelled === "unknown") problem(404, "Unknown job", `no job ${id}`);
    if (cancelled === "ended") problem(409, "Already ended", `job ${id} has already ended`);
    return c.json(jobs.get(id) as Record<string, unknown>);
  });
  app.get("/:id/events", (c) => jobEvents(c, jobs, c.req.param("id")));
  return app;
}

function snapshotRoutes(services: ControlServices, checkPath: PathCheck): Hono {
  const app = new Hono();
  app.get("/", validated("query", SnapshotsQuerySchema), async (c) => {
    const { repo } = c.req.valid("query");
    const list = await services.listSnapshots(await checkPath(repo));
    return list === undefined
      ? problem(404, "No repository", `no lanfree repository at ${repo}`)
      : c.json(list);
  });
  app.get("/:id/entries", validated("query", EntriesQuerySchema), async (c) => {
    const { repo, offset, limit } = c.req.valid("query");
    const id = c.req.param("id");
    if (services.snapshotEntries === undefined) {
      problem(404, "Not offered", "this server does not serve snapshot entries");
    }
    const page = await services.snapshotEntries(await checkPath(repo), id, offset, limit);
    return page === undefined
      ? problem(404, "Unknown snapshot", `no snapshot ${id.slice(0, 100)} in ${repo}`)
      : c.json(page);
  });
  return app;
}

/**
 * Every `/v1` body is JSON: one sent with another content type (`curl -d` sends a form type)
 * is read as JSON too, as the endpoint always has, so the validator does not see it as empty.
 */
const bodiesAreJson: MiddlewareHandler = async (c, next) => {
  const type = c.req.header("content-type") ?? "";
  if (c.req.raw.body !== null && !/^application\/([\w.-]+\+)?json\s*(;|$)/i.test(type)) {
    const headers = new Headers(c.req.raw.headers);
    headers.set("content-type", "application/json");
    c.req.raw = new Request(c.req.raw, { headers });
  }
  await next();
};

/**
 * The `/v1` API.
 *
 * @param services what the app runs on
 * @returns the sub-app (mount at `/v1`, behind the auth middleware)
 */
export function apiRoutes(services: ControlServices): Hono {
  const checkPath = pathCheck(services);
  const app = new Hono();
  app.use("*", bodiesAreJson);
  app.route("/jobs", jobRoutes(services.jobs, checkPath));
  app.route("/snapshots", snapshotRoutes(services, checkPath));
  app.get("/storage", (c) => {
    const occupancy = services.storageOccupancy();
    return occupancy === undefined
      ? problem(404, "No region", "no storage region is attached")
      : c.json(occupancy);
  });
  app.get("/region", (c) => {
    const report = services.regionReport?.();
    return report === undefined
      ? problem(404, "No region", "no storage region is attached")
      : c.json(report as Record<string, unknown>);
  });
  app.post("/conformance", validated("json", ConformanceRequestSchema), async (c) => {
    const request = c.req.valid("json");
    const ran = await services.suites.run({
      ...request,
      budgetMs: services.conformanceBudgetMs ?? 20_000,
    });
    if (ran === undefined) problem(404, "Unknown suite", `no suite named ${request.suite}`);
    return c.json(ran);
  });
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
