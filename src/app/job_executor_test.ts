import assert from "node:assert/strict";
import { createJobExecutor } from "./job_executor.ts";
import { JobQueue } from "./jobs.ts";
import { canonicalPath } from "./paths.ts";
import { listSnapshots, openRepository } from "./repository.ts";
import { createControlApp } from "../adapters/http.ts";

const auth = { authorization: "Bearer t0ken" };

async function waitForJob(app: ReturnType<typeof createControlApp>, id: string) {
  const events = await (await app.request(`/v1/jobs/${id}/events`, { headers: auth })).text();
  assert.match(events, /"state":"(succeeded|failed|cancelled)"/);
  return await (await app.request(`/v1/jobs/${id}`, { headers: auth })).json();
}

function post(body: unknown): Request {
  return new Request("http://lanfree/v1/jobs", {
    method: "POST",
    headers: { ...auth, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

Deno.test("HTTP jobs run real backups, verifies and restores, and report bytes per channel", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-jobs-" }));
  try {
    await Deno.mkdir(`${root}/src/sub`, { recursive: true });
    await Deno.writeTextFile(`${root}/src/sub/a.txt`, "hello through storage");
    const jobs = new JobQueue(createJobExecutor(null), () => Date.now());
    const app = createControlApp({
      token: "t0ken",
      roots: [root],
      resolvePath: canonicalPath,
      jobs,
      listSnapshots: async (repo) => await listSnapshots(await openRepository(repo)),
      storageOccupancy: () => undefined,
      suites: () => [],
    });
    const backup = await (await app.request(
      post({ kind: "backup", source: `${root}/src`, repo: `${root}/repo` }),
    )).json();
    const done = await waitForJob(app, backup.id);
    assert.equal(done.state, "succeeded", done.error);
    assert.equal(done.result.files, 1);
    assert.equal(
      done.result.dataPath,
      "network",
      "the server has no region: the network path, with a reason",
    );
    assert.match(done.result.fallbackReason, /no storage region/);
    assert.ok(done.progress.networkBytes > 0);
    const snapshots =
      await (await app.request(`/v1/snapshots?repo=${encodeURIComponent(`${root}/repo`)}`, {
        headers: auth,
      })).json();
    assert.equal(snapshots.length, 1);
    const verify = await waitForJob(
      app,
      (await (await app.request(post({ kind: "verify", repo: `${root}/repo` }))).json()).id,
    );
    assert.equal(verify.state, "succeeded", verify.error);
    const restore = await waitForJob(
      app,
      (await (await app.request(
        post({ kind: "restore", repo: `${root}/repo`, target: `${root}/out` }),
      )).json()).id,
    );
    assert.equal(restore.state, "succeeded", restore.error);
    assert.equal(await Deno.readTextFile(`${root}/out/sub/a.txt`), "hello through storage");
    const failing = await waitForJob(
      app,
      (await (await app.request(post({ kind: "verify", repo: `${root}/src` }))).json()).id,
    );
    assert.equal(failing.state, "failed");
    const metrics = await (await app.request("/metrics", { headers: auth })).text();
    assert.match(metrics, /^lanfree_job_failures 1$/m);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
