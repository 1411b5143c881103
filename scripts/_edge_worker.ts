/**
 * A Cloudflare Workers module (run by workerd in `edge_workerd_test.ts` and the
 * `edge-cold-start-ms` bench row) that uses lanfree only through its bundle:
 *
 * - `GET /suites?runs=N&seed=S` runs every platform-neutral conformance suite (`edgeSuites()`)
 *   and answers `{ passed, results }` as JSON;
 * - every other request goes to lanfree's HTTP control app, with conformance-only services:
 *   no file system (no roots, so every job request is refused), no repositories, no region;
 *   `POST /v1/conformance` runs the same suites. The bearer token is the `TOKEN` binding.
 *
 * It is written against `src/edge.ts` so `deno check` checks it; `_workerd.ts` compiles it
 * with that import pointed at `./lanfree.mjs`, the bundle, which workerd loads beside it.
 *
 * @module
 */

import {
  type ControlApp,
  createControlApp,
  edgeSuites,
  JobQueue,
  jobsPort,
  type RunOptions,
  runSuites,
  suitesPort,
} from "../src/edge.ts";

/** The most runs per property a request may ask for. */
const RUNS_MAX = 1000;

/** The bindings the workerd config gives the worker. */
interface Env {
  /** The bearer token of the control app. */
  readonly TOKEN: string;
}

/** The control app, made on the first request (the token comes with `env`). */
let app: ControlApp | undefined;

function conformanceOnlyApp(token: string): ControlApp {
  const noFileSystem = () => Promise.reject(new Error("this worker has no file system"));
  return createControlApp({
    token,
    roots: [],
    // No file system to canonicalise against; with no roots every path is refused (403).
    resolvePath: (path) => Promise.resolve(path),
    jobs: jobsPort(new JobQueue(noFileSystem, () => Date.now())),
    listSnapshots: noFileSystem,
    storageOccupancy: () => undefined,
    suites: suitesPort(edgeSuites),
    conformanceBudgetMs: 20_000,
  });
}

/** An integer query parameter within [min, max], `undefined` when absent; RangeError else. */
function integerParameter(url: URL, name: string, min: number, max: number): number | undefined {
  const text = url.searchParams.get(name);
  if (text === null) return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(
      `${name} must be an integer in ${min}..${max}, got ${JSON.stringify(text)}`,
    );
  }
  return value;
}

async function runEdgeSuites(url: URL): Promise<Response> {
  let options: RunOptions;
  try {
    const runs = integerParameter(url, "runs", 1, RUNS_MAX) ?? 10;
    const seed = integerParameter(url, "seed", Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    options = seed === undefined ? { runs } : { runs, seed };
  } catch (error) {
    return Response.json({ error: (error as Error).message }, { status: 400 });
  }
  const results = await runSuites(edgeSuites(), options);
  return Response.json({ passed: results.every((result) => result.passed), results });
}

/** The worker: its fetch handler. */
export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    if (request.method === "GET" && url.pathname === "/suites") return await runEdgeSuites(url);
    app ??= conformanceOnlyApp(env.TOKEN);
    return await app.fetch(request);
  },
};
