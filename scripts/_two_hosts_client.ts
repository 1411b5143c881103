/**
 * A process host (`src/adapters/host_link.ts`) that talks to a server's HTTP endpoint from the
 * server's host: the two-host tests run it inside the server's network namespace (the test
 * process cannot reach that namespace's addresses) and drive it with messages, so a job can be
 * submitted, watched and read without starting a CLI process for each request.
 *
 * In: `{ type: "health" }` (waits until the endpoint answers), `{ type: "submit", request }`,
 * `{ type: "wait", id }` (until the job ended), `{ type: "get", id }`. Out: `{ type: "ok" }`,
 * `{ type: "job", job }`, or `{ type: "refused", status, detail }`.
 *
 * @module
 */

import { hostSide } from "../src/adapters/host_link.ts";

/** What the client host receives. */
export type ClientInput =
  | { readonly type: "health" }
  | { readonly type: "submit"; readonly request: Record<string, unknown> }
  | { readonly type: "wait"; readonly id: string }
  | { readonly type: "get"; readonly id: string };

/** What the client host reports. */
export type ClientReport =
  | { readonly type: "ok" }
  | { readonly type: "job"; readonly job: Record<string, unknown> & { id: string; state: string } }
  | { readonly type: "refused"; readonly status: number; readonly detail: string };

const [base, token] = Deno.args;
const side = hostSide<ClientInput, ClientReport>();
const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };

async function job(path: string, init: RequestInit = {}): Promise<ClientReport> {
  const response = await fetch(`${base}${path}`, { ...init, headers });
  const body = await response.json();
  return response.ok
    ? { type: "job", job: body }
    : { type: "refused", status: response.status, detail: body.detail };
}

for (let turns = 0; turns < 100_000; turns++) {
  const message = await side.next(["health", "submit", "wait", "get"], Number.POSITIVE_INFINITY);
  if (message.type === "health") {
    for (let tries = 0; tries < 600; tries++) {
      const up = await fetch(`${base}/health`).then(
        (r) => r.body?.cancel().then(() => r.ok),
        () => false,
      );
      if (up) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    side.post({ type: "ok" });
  } else if (message.type === "submit") {
    side.post(await job("/v1/jobs", { method: "POST", body: JSON.stringify(message.request) }));
  } else if (message.type === "get") side.post(await job(`/v1/jobs/${message.id}`));
  else {
    const events = await fetch(`${base}/v1/jobs/${message.id}/events`, { headers });
    await events.body?.pipeTo(new WritableStream()); // the stream ends after the final state
    side.post(await job(`/v1/jobs/${message.id}`));
  }
}
