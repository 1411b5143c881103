/**
 * The CLI's front for a server: `deno task backup --server URL --agent HOST:PORT ...`,
 * `deno task restore --server URL ...` and `deno task validate --server URL ...` submit a job to
 * the server's endpoint (`POST /v1/jobs`, the token from `LANFREE_TOKEN`), follow its events
 * (`GET /v1/jobs/:id/events`, server-sent events parsed with `eventsource-parser`, since the
 * built-in `EventSource` cannot send the bearer token) for the progress bar, and read the ended
 * job for its summary.
 *
 * @module
 */

import { createParser } from "eventsource-parser";

/** Where the server is and how to authenticate. */
export interface ServerAddress {
  /** The endpoint's base URL. */
  readonly url: URL;
  /** The bearer token. */
  readonly token: string;
}

/** How a job ended, as the server recorded it. */
export interface EndedJob {
  readonly id: string;
  readonly state: "succeeded" | "failed" | "cancelled";
  readonly result?: unknown;
  readonly error?: string;
}

/** The server refused the request, or could not be reached. */
export class ServerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ServerError";
  }
}

/** Most events read from one job's stream. */
const EVENTS_MAX = 10_000_000;

/**
 * The server's address from `--server` and `LANFREE_TOKEN`.
 *
 * @param server the URL given
 * @param token the environment's token
 * @returns the address
 * @throws {ServerError} for a bad URL or a missing token
 */
export function serverAddress(server: string, token: string | undefined): ServerAddress {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new ServerError(`--server ${server} is not a URL (http://host:port)`);
  }
  if (token === undefined || token.trim() === "") {
    throw new ServerError("LANFREE_TOKEN must be set to the server's token");
  }
  return { url, token };
}

async function call(server: ServerAddress, path: string, init: RequestInit = {}) {
  let response: Response;
  try {
    response = await fetch(new URL(path, server.url), {
      ...init,
      headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ServerError(`cannot reach the server at ${server.url.origin}: ${reason}`);
  }
  if (!response.ok) {
    const text = await response.text();
    let detail = text;
    try {
      const problem = JSON.parse(text) as { title?: string; detail?: string };
      detail = `${problem.title ?? response.statusText}: ${problem.detail ?? ""}`;
    } catch {
      // not problem+json: the text as it came
    }
    throw new ServerError(`the server refused (${response.status}): ${detail}`);
  }
  return response;
}

/**
 * Submits a job, follows its progress and returns how it ended.
 *
 * @param server the endpoint and token
 * @param request the job, as `POST /v1/jobs` takes it
 * @param onProgress called with each progress event
 * @returns the ended job (its result or error)
 */
export async function runRemoteJob(
  server: ServerAddress,
  request: Record<string, unknown>,
  onProgress: (progress: { files: number; bytes: number; totalBytes: number }) => void,
): Promise<EndedJob> {
  const submitted = await (await call(server, "/v1/jobs", {
    method: "POST",
    body: JSON.stringify(request),
  })).json() as { id: string };
  const events = await call(server, `/v1/jobs/${submitted.id}/events`);
  let ended = false;
  let count = 0;
  const parser = createParser({
    onEvent: (event) => {
      if (++count > EVENTS_MAX) throw new ServerError("too many events");
      const data = JSON.parse(event.data);
      if (data.type === "progress") onProgress(data.progress);
      if (data.type === "state" && ["succeeded", "failed", "cancelled"].includes(data.state)) {
        ended = true;
      }
    },
  });
  const reader = events.body!.pipeThrough(new TextDecoderStream()).getReader();
  try {
    // Bounded by the job: its stream ends after its final state.
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      parser.feed(chunk.value);
      if (ended) break;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  const job = await (await call(server, `/v1/jobs/${submitted.id}`)).json() as EndedJob;
  if (!["succeeded", "failed", "cancelled"].includes(job.state)) {
    throw new ServerError(`the event stream of job ${job.id} ended while it was ${job.state}`);
  }
  return job;
}
