import assert from "node:assert/strict";
import { type ControlServices, createControlApp, type StorageOccupancy } from "./http.ts";
import { type JobExecutor, JobQueue, jobsPort } from "../app/jobs/jobs.ts";
import { suitesPort } from "../../property-tests/_runner.ts";
import { canonicalPath } from "../app/paths.ts";
import { descriptorSuite } from "../../property-tests/dispatch_suite.ts";

const TOKEN = "test-token-0123456789";
const auth = { authorization: `Bearer ${TOKEN}` };

interface Fixture {
  root: string;
  services: ControlServices;
  app: ReturnType<typeof createControlApp>;
  jobs: JobQueue;
  release: () => void;
  dispose: () => Promise<void>;
}

/** A real app over a temp root; jobs wait until `release()` so tests see running states. */
async function fixture(
  options: { occupancy?: StorageOccupancy; fail?: boolean; bodyBytesMax?: number } = {},
): Promise<Fixture> {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-http-" }));
  let release = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  const execute: JobExecutor = async (request, { signal, report }) => {
    report({ files: 1, bytes: 10, totalBytes: 10, storageBytes: 10, networkBytes: 0 });
    await Promise.race([
      gate,
      new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    ]);
    if (options.fail) throw new Error(`cannot ${request.kind}`);
    return { kind: request.kind };
  };
  const jobs = new JobQueue(execute, () => Date.now(), { queuedMax: 2 });
  const services: ControlServices = {
    token: TOKEN,
    roots: [root],
    resolvePath: canonicalPath,
    jobs: jobsPort(jobs),
    listSnapshots: (repo) => Promise.resolve([{ repo }]),
    snapshotEntries: (repo, id, offset, limit) =>
      Promise.resolve(id === "unknown" ? undefined : { repo, id, offset, limit }),
    storageOccupancy: () => options.occupancy,
    suites: suitesPort(() => [descriptorSuite()]),
    bodyBytesMax: options.bodyBytesMax ?? 1024,
    conformanceBudgetMs: 5_000,
  };
  return {
    root,
    services,
    app: createControlApp(services),
    jobs,
    release,
    dispose: async () => {
      release();
      for (const job of jobs.list()) await jobs.settled(job.id);
      await Deno.remove(root, { recursive: true });
    },
  };
}

function post(path: string, body: unknown, headers: Record<string, string> = auth): Request {
  return new Request(`http://lanfree${path}`, {
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function expectProblem(response: Response, status: number, detail?: RegExp) {
  assert.equal(response.status, status);
  assert.equal(response.headers.get("content-type"), "application/problem+json");
  const body = await response.json();
  assert.equal(body.status, status);
  if (detail !== undefined) assert.match(body.detail, detail);
}

Deno.test("GET /health answers without a token; every other route needs one", async () => {
  const f = await fixture();
  try {
    assert.deepEqual(await (await f.app.request("/health")).json(), { status: "ok" });
    for (const path of ["/v1/jobs", "/metrics", "/v1/storage"]) {
      await expectProblem(await f.app.request(path), 401);
      await expectProblem(
        await f.app.request(path, { headers: { authorization: "Bearer wrong" } }),
        401,
      );
    }
    await expectProblem(await f.app.request(post("/v1/jobs", {}, {})), 401);
  } finally {
    await f.dispose();
  }
});

Deno.test("POST /v1/jobs starts a job that GET shows and the events stream follows to the end", async () => {
  const f = await fixture();
  try {
    const response = await f.app.request(
      post("/v1/jobs", { kind: "verify", repo: `${f.root}/repo` }),
    );
    assert.equal(response.status, 202);
    const job = await response.json();
    assert.equal(job.request.kind, "verify");
    const listed = await (await f.app.request("/v1/jobs", { headers: auth })).json();
    assert.equal(listed[0].id, job.id);
    const events = await f.app.request(`/v1/jobs/${job.id}/events`, { headers: auth });
    assert.equal(events.headers.get("content-type"), "text/event-stream");
    f.release();
    const text = await events.text();
    assert.match(text, /event: progress/);
    assert.match(text, /"state":"succeeded"/);
    const done = await (await f.app.request(`/v1/jobs/${job.id}`, { headers: auth })).json();
    assert.deepEqual([done.state, done.result], ["succeeded", { kind: "verify" }]);
  } finally {
    await f.dispose();
  }
});

Deno.test("DELETE /v1/jobs/:id cancels a running job; a second delete is 409, an unknown id 404", async () => {
  const f = await fixture();
  try {
    const job = await (await f.app.request(post("/v1/jobs", { kind: "verify", repo: f.root })))
      .json();
    const cancelled = await f.app.request(`/v1/jobs/${job.id}`, {
      method: "DELETE",
      headers: auth,
    });
    assert.equal(cancelled.status, 200);
    await f.jobs.settled(job.id);
    assert.equal(f.jobs.get(job.id)?.state, "cancelled");
    await expectProblem(
      await f.app.request(`/v1/jobs/${job.id}`, { method: "DELETE", headers: auth }),
      409,
    );
    await expectProblem(await f.app.request("/v1/jobs/job-999", { headers: auth }), 404);
    await expectProblem(
      await f.app.request("/v1/jobs/job-999", { method: "DELETE", headers: auth }),
      404,
    );
    await expectProblem(await f.app.request("/v1/jobs/job-999/events", { headers: auth }), 404);
  } finally {
    await f.dispose();
  }
});

Deno.test("bad job bodies are 400 naming the field; paths outside the roots are 403", async () => {
  const f = await fixture();
  try {
    await expectProblem(await f.app.request(post("/v1/jobs", "{not json")), 400, /not valid JSON/);
    await expectProblem(
      await f.app.request(post("/v1/jobs", { kind: "verify", repo: 7 })),
      400,
      /^repo:/,
    );
    await expectProblem(
      await f.app.request(post("/v1/jobs", { kind: "verify", repo: f.root, extra: 1 })),
      400,
      /extra/,
    );
    await expectProblem(
      await f.app.request(post("/v1/jobs", { kind: "shred", repo: f.root })),
      400,
      /kind/,
    );
    await expectProblem(
      await f.app.request(post("/v1/jobs", { kind: "verify", repo: "/etc" })),
      403,
      /\/etc/,
    );
    await expectProblem(
      await f.app.request(
        post("/v1/jobs", { kind: "restore", repo: f.root, target: `${f.root}/../escape` }),
      ),
      403,
    );
    await expectProblem(
      await f.app.request(post("/v1/jobs", { kind: "backup", repo: f.root, mode: "db" })),
      400,
      /^db: is needed with mode db/,
    );
    await expectProblem(
      await f.app.request(post("/v1/jobs", { kind: "backup", repo: f.root, agent: "no-port" })),
      400,
      /^agent: must be host:port/,
    );
    await Deno.symlink("/etc", `${f.root}/link`);
    await expectProblem(
      await f.app.request(post("/v1/jobs", { kind: "verify", repo: `${f.root}/link/x` })),
      403,
    );
    assert.equal(f.jobs.list().length, 0, "no refused request started a job");
  } finally {
    await f.dispose();
  }
});

Deno.test("with an agent, the source and target are the agent's: only the repository is checked against the roots", async () => {
  const f = await fixture();
  try {
    const backup = await f.app.request(post("/v1/jobs", {
      kind: "backup",
      agent: "10.0.0.2:7000",
      source: "/data/on/the/agent",
      repo: f.root,
    }));
    assert.equal(backup.status, 202);
    await expectProblem(
      await f.app.request(post("/v1/jobs", {
        kind: "restore",
        agent: "10.0.0.2:7000",
        repo: "/etc",
        target: "/restore/on/the/agent",
      })),
      403,
      /\/etc/,
    );
  } finally {
    await f.dispose();
  }
});

Deno.test("a body over the limit is 413 and a full queue is 503", async () => {
  const f = await fixture();
  try {
    await expectProblem(
      await f.app.request(post("/v1/jobs", { kind: "verify", repo: "x".repeat(2000) })),
      413,
    );
    for (let i = 0; i < 3; i++) {
      await f.app.request(post("/v1/jobs", { kind: "verify", repo: f.root }));
    }
    await expectProblem(
      await f.app.request(post("/v1/jobs", { kind: "verify", repo: f.root })),
      503,
      /full/,
    );
  } finally {
    await f.dispose();
  }
});

Deno.test("GET /v1/snapshots lists a repository inside the roots and needs ?repo", async () => {
  const f = await fixture();
  try {
    const listed = await f.app.request(`/v1/snapshots?repo=${encodeURIComponent(f.root)}`, {
      headers: auth,
    });
    assert.deepEqual(await listed.json(), [{ repo: f.root }]);
    await expectProblem(await f.app.request("/v1/snapshots", { headers: auth }), 400, /repo/);
    await expectProblem(await f.app.request("/v1/snapshots?repo=/", { headers: auth }), 403);
  } finally {
    await f.dispose();
  }
});

Deno.test("GET /v1/storage shows occupancy, or 404 when no region is attached; /metrics reports both", async () => {
  const occupancy = {
    controlBlocks: { total: 64, inUse: 3 },
    stgs: [{ id: 1, lengthBytes: 1024, usedBytes: 0, portsInUse: 1 }],
  };
  const f = await fixture({ occupancy });
  const none = await fixture();
  try {
    assert.deepEqual(
      await (await f.app.request("/v1/storage", { headers: auth })).json(),
      occupancy,
    );
    await expectProblem(await none.app.request("/v1/storage", { headers: auth }), 404);
    const metrics = await (await f.app.request("/metrics", { headers: auth })).text();
    assert.match(metrics, /^lanfree_control_blocks_in_use 3$/m);
    assert.match(metrics, /^lanfree_channel_bytes\{channel="storage"\} 0$/m);
    assert.match(metrics, /^lanfree_jobs\{state="failed"\} 0$/m);
  } finally {
    await f.dispose();
    await none.dispose();
  }
});

Deno.test("POST /v1/conformance runs suites with runs and seed, and refuses unknown ones", async () => {
  const f = await fixture();
  try {
    const response = await f.app.request(post("/v1/conformance", { runs: 3, seed: 5 }));
    const body = await response.json();
    assert.equal(body.passed, true);
    assert.ok(
      body.results.every((r: { runs: number; seed: number }) => r.runs === 3 && r.seed === 5),
    );
    await expectProblem(await f.app.request(post("/v1/conformance", { suite: "nope" })), 404);
    await expectProblem(await f.app.request(post("/v1/conformance", { runs: 0 })), 400, /^runs:/);
  } finally {
    await f.dispose();
  }
});

Deno.test("unknown routes are 404 problems", async () => {
  const f = await fixture();
  try {
    await expectProblem(await f.app.request("/v2/nothing", { headers: auth }), 404);
  } finally {
    await f.dispose();
  }
});

Deno.test("the app answers over a real Deno.serve on an ephemeral port", async () => {
  const f = await fixture();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, f.app.fetch);
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    assert.deepEqual(await (await fetch(`${base}/health`)).json(), { status: "ok" });
    const unauthorized = await fetch(`${base}/v1/jobs`);
    assert.equal(unauthorized.status, 401);
    await unauthorized.body?.cancel();
    const jobs = await fetch(`${base}/v1/jobs`, { headers: auth });
    assert.deepEqual(await jobs.json(), []);
  } finally {
    await server.shutdown();
    await f.dispose();
  }
});

Deno.test("a NUL byte, an absurdly long or deep path in a request is 400 problem+json, never 500", async () => {
  const f = await fixture({ bodyBytesMax: 64 * 1024 });
  try {
    const bad = [
      `${f.root}/a\u0000b`,
      `${f.root}/${"x".repeat(300)}/repo`, // one component longer than NAME_MAX
      `${f.root}/${"d/".repeat(3000)}repo`, // deeper and longer than PATH_MAX
      `${f.root}/${"../".repeat(5000)}`,
    ];
    for (const repo of bad) {
      const shown = JSON.stringify(repo.slice(0, 40));
      const job = await f.app.request(post("/v1/jobs", { kind: "verify", repo }));
      assert.equal(job.status, 400, `POST /v1/jobs with repo ${shown}`);
      await expectProblem(job, 400);
      const query = `/v1/snapshots?repo=${encodeURIComponent(repo)}`;
      const list = await f.app.request(query, { headers: auth });
      assert.equal(list.status, 400, `GET /v1/snapshots with repo ${shown}`);
      await expectProblem(list, 400);
    }
    assert.equal(f.jobs.list().length, 0);
  } finally {
    await f.dispose();
  }
});

Deno.test("the app refuses a bearer token no request could match (empty, blank, or not token68)", async () => {
  const f = await fixture();
  try {
    for (const token of ["", "  ", "two words", "tab\there"]) {
      assert.throws(
        () => createControlApp({ ...f.services, token }),
        /bearer token/,
        JSON.stringify(token),
      );
    }
  } finally {
    await f.dispose();
  }
});

Deno.test("GET /v1/snapshots/:id/entries pages with a bounded limit: 400 beyond it, 404 for an unknown id", async () => {
  const f = await fixture();
  try {
    const base = `/v1/snapshots/someid/entries?repo=${encodeURIComponent(f.root)}`;
    const page = await f.app.request(`${base}&offset=5&limit=7`, { headers: auth });
    assert.deepEqual(await page.json(), { repo: f.root, id: "someid", offset: 5, limit: 7 });
    const defaults = await f.app.request(base, { headers: auth });
    assert.deepEqual(await defaults.json(), { repo: f.root, id: "someid", offset: 0, limit: 100 });
    for (const query of ["&limit=1001", "&limit=0", "&offset=-1", "&limit=abc", "&offset=1.5"]) {
      await expectProblem(await f.app.request(`${base}${query}`, { headers: auth }), 400);
    }
    await expectProblem(
      await f.app.request(`/v1/snapshots/someid/entries?repo=/etc`, { headers: auth }),
      403,
    );
    await expectProblem(
      await f.app.request(
        `/v1/snapshots/unknown/entries?repo=${encodeURIComponent(f.root)}`,
        { headers: auth },
      ),
      404,
    );
    const { snapshotEntries: _, ...withoutEntries } = f.services;
    await expectProblem(
      await createControlApp(withoutEntries).request(`${base}&limit=1`, { headers: auth }),
      404,
      /does not serve snapshot entries/,
    );
  } finally {
    await f.dispose();
  }
});
