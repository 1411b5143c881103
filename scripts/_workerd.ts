/**
 * Runs lanfree's bundle inside workerd, Cloudflare's open-source Workers runtime, installed from
 * npm (`workerd` and its platform package `@cloudflare/workerd-linux-64`, pinned in
 * `deno.json`). Writes a workerd config around `_edge_worker.ts` (compiled to plain JavaScript
 * that imports the bundle as `./lanfree.mjs`) and the bundle in a directory,
 * starts workerd on a free port on 127.0.0.1 (workerd picks it and reports it on its control
 * descriptor), and measures the time from starting the process to the first response.
 *
 * @module
 */

import * as esbuild from "esbuild";

/** Where the workerd binary is, or why it is not there. */
export type WorkerdLocation =
  | { readonly ok: true; readonly path: string; readonly compatibilityDate: string }
  | { readonly ok: false; readonly reason: string };

/** A running workerd serving the edge worker. */
export interface EdgeWorker {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  /** From starting the workerd process to the end of the first response (`GET /health`), ms. */
  readonly firstResponseMs: number;
  /** What workerd wrote to stderr so far (the last 64 KiB). */
  stderr(): string;
  /** Stops workerd and waits for it to exit. */
  stop(): Promise<void>;
}

const WORKER_SOURCE = new URL("./_edge_worker.ts", import.meta.url).pathname;
const STDERR_KEPT_BYTES = 64 * 1024;
const CONTROL_LINES_MAX = 100;

/**
 * Finds the workerd binary through Deno's npm support (the `workerd` package exports its path).
 *
 * @returns the binary and the newest compatibility date it supports, or why it is missing
 */
export async function locateWorkerd(): Promise<WorkerdLocation> {
  try {
    const workerd = await import("workerd");
    const path = String(workerd.default?.default ?? workerd.default);
    await Deno.stat(path);
    return { ok: true, path, compatibilityDate: String(workerd.compatibilityDate) };
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
}

/**
 * Compiles the worker to `outfile`: TypeScript stripped, its import of `src/edge.ts` left as an
 * import of `./lanfree.mjs` (the bundle built from that same module), nothing else bundled in.
 */
async function compileWorker(outfile: string): Promise<void> {
  try {
    const result = await esbuild.build({
      entryPoints: [WORKER_SOURCE],
      metafile: true,
      outfile,
      bundle: true,
      format: "esm",
      platform: "neutral",
      target: "es2022",
      logLevel: "silent",
      plugins: [{
        name: "edge-is-the-bundle",
        setup(build) {
          build.onResolve({ filter: /\/src\/edge\.ts$/ }, () => ({
            path: "./lanfree.mjs",
            external: true,
          }));
        },
      }],
    });
    const inputs = Object.keys(result.metafile.inputs);
    if (inputs.length !== 1) {
      throw new Error(`the edge worker must use lanfree only through the bundle, not ${inputs}`);
    }
  } finally {
    await esbuild.stop();
  }
}

/** The config: one worker of two modules, one HTTP socket on 127.0.0.1 with port 0. */
function configText(compatibilityDate: string, token: string): string {
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [(name = "main", worker = .worker)],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "main")],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "worker.mjs", esModule = embed "worker.mjs"),
    (name = "lanfree.mjs", esModule = embed "lanfree.mjs"),
  ],
  compatibilityDate = ${JSON.stringify(compatibilityDate)},
  bindings = [(name = "TOKEN", text = ${JSON.stringify(token)})],
);
`;
}

/** Keeps the tail of a byte stream as text. */
function keepTail(stream: ReadableStream<Uint8Array>): () => string {
  let text = "";
  (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text = (text + chunk).slice(-STDERR_KEPT_BYTES);
    }
  })().catch(() => {});
  return () => text;
}

/** Reads workerd's control lines until it reports the port of socket `http`. */
async function listeningPort(stdout: ReadableStream<Uint8Array>): Promise<number> {
  let buffered = "";
  let lines = 0;
  for await (const chunk of stdout.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (++lines > CONTROL_LINES_MAX) {
        throw new Error("workerd: no listen event on its control fd");
      }
      const event = JSON.parse(line) as { event?: string; socket?: string; port?: number };
      if (event.event === "listen" && event.socket === "http" && event.port !== undefined) {
        return event.port;
      }
    }
  }
  throw new Error("workerd: its control fd closed before it listened");
}

/**
 * Starts workerd serving `_edge_worker.ts` over the given bundle, and makes the first request.
 *
 * @param options `dir` (a fresh directory for the config and modules), `bundlePath` (the built
 *   `lanfree.mjs`), the bearer `token`, and `startTimeoutMs` (default 30 000)
 * @returns the running worker; stop it when done
 * @throws Error when workerd is missing, exits, or does not answer within the timeout (with
 *   what it wrote to stderr)
 */
export async function startEdgeWorker(options: {
  readonly dir: string;
  readonly bundlePath: string;
  readonly token: string;
  readonly startTimeoutMs?: number;
}): Promise<EdgeWorker> {
  const workerd = await locateWorkerd();
  if (!workerd.ok) throw new Error(`workerd is not installed: ${workerd.reason}`);
  await compileWorker(`${options.dir}/worker.mjs`);
  const bundleCopy = `${options.dir}/lanfree.mjs`;
  if (
    await Deno.realPath(options.bundlePath) !== await Deno.realPath(options.dir) + "/lanfree.mjs"
  ) {
    await Deno.copyFile(options.bundlePath, bundleCopy);
  }
  const config = `${options.dir}/config.capnp`;
  await Deno.writeTextFile(config, configText(workerd.compatibilityDate, options.token));

  const started = performance.now();
  const child = new Deno.Command(workerd.path, {
    args: ["serve", config, "--control-fd=1"],
    cwd: options.dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = keepTail(child.stderr);
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    await child.status;
  };
  const timeoutMs = options.startTimeoutMs ?? 30_000;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), timeoutMs);
  try {
    const timedOut = new Promise<never>((_, reject) =>
      deadline.signal.addEventListener("abort", () => {
        reject(new Error(`workerd did not answer within ${timeoutMs} ms: ${stderr()}`));
      })
    );
    const exited = child.status.then((status): never => {
      throw new Error(`workerd exited with code ${status.code}: ${stderr()}`);
    });
    // Whichever loses the races below rejects later (stop() ends the process): not an error.
    timedOut.catch(() => {});
    exited.catch(() => {});
    const port = await Promise.race([listeningPort(child.stdout), exited, timedOut]);
    const url = `http://127.0.0.1:${port}`;
    const first = await fetch(`${url}/health`, { signal: deadline.signal });
    await first.arrayBuffer();
    if (!first.ok) throw new Error(`workerd: GET /health answered ${first.status}: ${stderr()}`);
    return { url, firstResponseMs: performance.now() - started, stderr, stop };
  } catch (error) {
    await stop();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
