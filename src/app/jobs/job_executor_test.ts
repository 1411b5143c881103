import assert from "node:assert/strict";
import { createJobExecutor } from "./job_executor.ts";
import { JobQueue } from "./jobs.ts";
import { denoControlServices } from "../server/control_services.ts";
import { createControlApp } from "../../adapters/http.ts";
import { backupHostsRunning, blocksHeld, jobRegionConfig } from "./backup_job.ts";
import { runLocalBackup } from "./local_backup.ts";
import { describeTree } from "../_testing.ts";
import { formatRegion } from "../../core/stp/region.ts";
import type { WriterStep } from "../repository/snapshot_writer.ts";

const auth = { authorization: "Bearer t0ken" };

/** How long a test waits for a job to end before it fails with the job's state instead of hanging. */
const JOB_DEADLINE_MS = 180_000;

/** What `work` settles to, or `late` once `deadlineMs` passed first (the timer cleared either way). */
async function within<T, L>(work: Promise<T>, deadlineMs: number, late: L): Promise<T | L> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<L>((resolve) => {
    timer = setTimeout(() => resolve(late), deadlineMs);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitForJob(app: ReturnType<typeof createControlApp>, id: string) {
  const ended =
    (async () => await (await app.request(`/v1/jobs/${id}/events`, { headers: auth })).text())();
  const events = await within(ended, JOB_DEADLINE_MS, undefined);
  const job = await (await app.request(`/v1/jobs/${id}`, { headers: auth })).json();
  if (events === undefined) {
    const where = `state ${job.state}, progress ${JSON.stringify(job.progress)}`;
    throw new Error(`job ${id} did not end within ${JOB_DEADLINE_MS} ms: ${where}`);
  }
  assert.match(events, /"state":"(succeeded|failed|cancelled)"/);
  return job;
}

/** How long a test waits for a drill's pause before it fails instead of hanging. */
const PAUSE_DEADLINE_MS = 120_000;

/**
 * Waits until the job's server stopped at its drill pause; a job that ended first (it failed
 * before reaching the pause: a storage connect refused on a loaded machine, a handshake past its
 * deadline) fails the test with the job's state and error, as does no pause within a deadline.
 * A bare `await paused` waited forever in both cases.
 */
async function pausedOrEnded(
  paused: Promise<void>,
  app: ReturnType<typeof createControlApp>,
  id: string,
): Promise<void> {
  const ended = waitForJob(app, id).then(
    (job) => `the job ended ${job.state} before its server paused: ${job.error ?? "no error"}`,
    (error: Error) => `the job's events failed before its server paused: ${error.message}`,
  );
  const why = await within(
    Promise.race([paused.then(() => undefined), ended]),
    PAUSE_DEADLINE_MS,
    `no pause within ${PAUSE_DEADLINE_MS} ms`,
  );
  if (why !== undefined) throw new Error(`job ${id}: ${why}`);
}

/** The real control app and Deno services over a job queue, with `root` as its only root. */
function appOver(jobs: JobQueue, root: string) {
  return createControlApp(
    denoControlServices({ token: "t0ken", roots: [root], jobs, region: null, suites: () => [] }),
  );
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
    const app = appOver(
      new JobQueue(createJobExecutor({ region: null, roots: [root] }), Date.now),
      root,
    );
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
    assert.deepEqual(snapshots[0].entries, { files: 1, dirs: 1, symlinks: 0, fileBytes: 21 });
    const page = await (await app.request(
      `/v1/snapshots/${snapshots[0].id}/entries?repo=${
        encodeURIComponent(`${root}/repo`)
      }&offset=0&limit=1`,
      { headers: auth },
    )).json();
    assert.deepEqual(page.entries.map((e: { path: string }) => e.path), ["sub"]);
    assert.equal(page.nextOffset, 1);
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
    assert.deepEqual(restore.result.warnings, []);
    assert.deepEqual(
      restore.progress,
      { files: 1, bytes: 21, totalBytes: 21, storageBytes: 0, networkBytes: 0 },
      "a local restore's card ends with what it wrote (no channel: it reads the repository)",
    );
    const inside = await waitForJob(
      app,
      (await (await app.request(
        post({ kind: "restore", repo: `${root}/repo`, target: `${root}/src/again` }),
      )).json()).id,
    );
    assert.equal(inside.state, "succeeded", inside.error);
    assert.match(inside.result.warnings[0], /inside the snapshot's source/);
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

/** Every file under `root` with its bytes (directories by name): to show a tree did not change. */
async function filesOf(root: string): Promise<string[]> {
  return (await describeTree(root)).map((e) => `${e.type} ${e.path} ${e.detail}`);
}

Deno.test("a job that fails before its drill pause ends the wait with the job's error, not a hang", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-nopause-" }));
  try {
    await Deno.mkdir(`${root}/src`);
    await Deno.writeTextFile(`${root}/src/a.txt`, "never archived");
    let paused = () => {};
    const mid = new Promise<void>((resolve) => (paused = resolve));
    const pause = { pauseServerAt: "archive-bytes", onServerPaused: paused } as const;
    // No region and the storage channel demanded: the job fails before any archive byte.
    const executor = createJobExecutor({ region: null, roots: [root], drill: () => pause });
    const app = appOver(new JobQueue(executor, Date.now), root);
    const job = await (await app.request(
      post({ kind: "backup", source: `${root}/src`, repo: `${root}/repo`, channel: "storage" }),
    )).json();
    await assert.rejects(
      pausedOrEnded(mid, app, job.id),
      /the job ended failed before its server paused: .*storage/,
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** Committed snapshots in a repository (their manifests under `snapshots/`). */
async function snapshotCount(repo: string): Promise<number> {
  return (await filesOf(`${repo}/snapshots`)).filter((file) => file.includes(".manifest.json"))
    .length;
}

/**
 * The drill of a cancel at one writer step: a backup job's server pauses at `step`, the test
 * DELETEs the job there, and checks that the job ends `cancelled` with the repository as before
 * (`ends` "cancelled": the step is before the commit point) or with one more snapshot and an error
 * that says it is kept (`ends` "kept": at or after the commit point), that the lock, temporary
 * files, Worker hosts and region blocks are released, and that a following backup takes the lock
 * at once.
 */
async function cancelAtWriterStep(step: WriterStep, ends: "cancelled" | "kept") {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-cancel-" }));
  const formatted = formatRegion(jobRegionConfig(64, 64, 10_000), crypto.randomUUID());
  if (!formatted.ok) throw new Error(formatted.message);
  const region = formatted.value;
  try {
    await Deno.mkdir(`${root}/src`);
    for (let i = 0; i < 4; i++) {
      await Deno.writeFile(`${root}/src/file ${i}`, new Uint8Array(3 << 20).fill(i + 1));
    }
    await runLocalBackup({ source: `${root}/src`, repo: `${root}/repo` });
    const before = await filesOf(`${root}/repo`);
    const snapshotsBefore = await snapshotCount(`${root}/repo`);
    let paused = () => {};
    const mid = new Promise<void>((resolve) => (paused = resolve));
    const pause = { pauseServerAt: step, onServerPaused: paused } as const;
    const executor = createJobExecutor({ region, roots: [root], drill: () => pause });
    const app = appOver(new JobQueue(executor, Date.now), root);
    const job = await (await app.request(
      post({ kind: "backup", source: `${root}/src`, repo: `${root}/repo`, channel: "storage" }),
    )).json();
    await pausedOrEnded(mid, app, job.id);
    if (step !== "released") {
      assert.ok(
        await Deno.lstat(`${root}/repo/lock`),
        `paused at ${step}: the server holds the lock`,
      );
    }
    if (step === "archive-bytes") {
      assert.equal([...Deno.readDirSync(`${root}/repo/tmp`)].length, 1, "and a partial archive");
    }
    assert.ok(blocksHeld(region) > 0, `paused at ${step}: control blocks held in the region`);
    assert.equal(backupHostsRunning(), 2);
    const deleted = await app.request(`/v1/jobs/${job.id}`, { method: "DELETE", headers: auth });
    assert.equal(deleted.status, 200);
    await deleted.body?.cancel();
    const done = await waitForJob(app, job.id);
    assert.equal(done.state, "cancelled", `cancelled at ${step}: ${done.error ?? "no error"}`);
    assert.match(done.error, /cancelled by request/);
    if (ends === "cancelled") {
      assert.deepEqual(await filesOf(`${root}/repo`), before, "the repository is as before");
    } else {
      assert.match(done.error, /committed and kept/);
      assert.equal(await snapshotCount(`${root}/repo`), snapshotsBefore + 1, "the commit stays");
    }
    assert.equal(blocksHeld(region), 0, "no control block stays held");
    assert.equal(backupHostsRunning(), 0, "no Worker host stays up");
    assert.deepEqual([...Deno.readDirSync(`${root}/repo/tmp`)], [], "no temporary file is left");
    const next = await runLocalBackup({
      source: `${root}/src`,
      repo: `${root}/repo`,
      lockWaitMs: 0,
    });
    assert.equal(next.files, 4, "the next backup takes the lock at once");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("DELETE of a running backup job aborts its snapshot: lock, temporary files, hosts and region blocks released", async () => {
  await cancelAtWriterStep("archive-bytes", "cancelled");
});

Deno.test("a queued job whose parent directory became a symlink out of the root neither reads nor writes outside", async () => {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-swap-" }));
  const root = `${base}/root`;
  try {
    for (const dir of [`${root}/busy`, `${root}/a/src`, `${root}/c`, `${base}/outside/a/src`]) {
      await Deno.mkdir(dir, { recursive: true });
    }
    await Deno.mkdir(`${base}/outside/c`);
    await Deno.writeFile(`${root}/busy/big`, new Uint8Array(3 << 20).fill(1));
    await Deno.writeTextFile(`${root}/a/src/ok.txt`, "inside the root");
    await Deno.writeTextFile(`${base}/outside/a/src/secret.txt`, "outside the root");
    await runLocalBackup({ source: `${root}/a/src`, repo: `${root}/repo` });
    let paused = () => {};
    const busy = new Promise<void>((resolve) => (paused = resolve));
    const pause = { pauseServerAt: "archive-bytes", onServerPaused: paused } as const;
    const drill = (request: { source?: string }) =>
      request.source === `${root}/busy` ? pause : undefined;
    const jobs = new JobQueue(createJobExecutor({ region: null, roots: [root], drill }), Date.now);
    const app = appOver(jobs, root);
    const submit = async (body: unknown) => (await (await app.request(post(body))).json()).id;
    const first = await submit({
      kind: "backup",
      source: `${root}/busy`,
      repo: `${root}/busy-repo`,
    });
    await pausedOrEnded(busy, app, first); // the queue is held busy by a backup mid-flight
    const backup = await submit({ kind: "backup", source: `${root}/a/src`, repo: `${root}/repo2` });
    const restore = await submit({
      kind: "restore",
      repo: `${root}/repo`,
      target: `${root}/c/out`,
    });
    // While they wait, swap their parent directories for symlinks that lead out of the root.
    await Deno.rename(`${root}/a`, `${base}/a-moved`);
    await Deno.symlink(`${base}/outside/a`, `${root}/a`);
    await Deno.remove(`${root}/c`);
    await Deno.symlink(`${base}/outside/c`, `${root}/c`);
    jobs.cancel(first);
    for (const id of [backup, restore]) {
      const done = await waitForJob(app, id);
      assert.equal(done.state, "failed", `${done.request.kind} must be refused`);
      assert.match(done.error, /outside the roots/);
    }
    assert.deepEqual([...Deno.readDirSync(`${base}/outside/c`)], [], "nothing written outside");
    const repo2 = await Deno.lstat(`${root}/repo2`).then(() => true, () => false);
    assert.equal(repo2, false, "no snapshot of the outside tree was made");
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("HTTP forget, prune and consolidate jobs do what their CLIs do, and a backup job with keep applies retention", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-jobs-" }));
  try {
    await Deno.mkdir(`${root}/src`);
    const [source, repo] = [`${root}/src`, `${root}/repo`];
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      await Deno.writeTextFile(`${source}/f${i}`, `file ${i}`);
      ids.push((await runLocalBackup({ source, repo, incremental: i > 0 })).snapshot);
    }
    const app = appOver(
      new JobQueue(createJobExecutor({ region: null, roots: [root] }), Date.now),
      root,
    );
    const run = async (body: unknown) => {
      const job = await waitForJob(app, (await (await app.request(post(body))).json()).id);
      assert.equal(job.state, "succeeded", job.error);
      return job.result;
    };
    const dry = await run({ kind: "forget", repo, keep: { last: 2 }, dryRun: true });
    assert.deepEqual([dry.forget.removed, dry.prune], [[ids[0]], undefined]);
    const consolidated = await run({ kind: "consolidate", repo, snapshot: "latest", source });
    assert.deepEqual([consolidated.snapshot, consolidated.formerParent], [ids[2], ids[1]]);
    const forget = await run({ kind: "forget", repo, keep: { last: 1 }, prune: true });
    assert.deepEqual(forget.forget.removed, [ids[0], ids[1]]);
    assert.deepEqual(forget.prune.archives.map((a: { action: string }) => a.action), [
      "remove",
      "remove",
      "keep",
    ]);
    const pruned = await run({ kind: "prune", repo, maxUnusedPercent: 0 });
    assert.deepEqual(pruned.archives.map((a: { action: string }) => a.action), ["keep"]);
    await Deno.writeTextFile(`${source}/f3`, "file 3");
    const backup = await run({
      kind: "backup",
      source,
      repo,
      incremental: true,
      keep: { last: 1 },
    });
    assert.deepEqual(backup.retention.forget.removed, [ids[2]]);
    assert.deepEqual(backup.retention.forget.kept, [backup.snapshot]);
    const bad: Array<[unknown, RegExp]> = [
      [{ kind: "forget", repo, keep: { daily: "x" } }, /daily/],
      [{ kind: "forget", repo, keep: { within: "3w" } }, /keep-within: duration .*3w/],
      [{ kind: "forget", repo, keep: { last: 1 }, timeZone: "Mars/Base" }, /time zone/],
      [{ kind: "prune", repo, maxUnusedPercent: 200 }, /maxUnusedPercent/],
      [{ kind: "consolidate", repo }, /snapshot/],
    ];
    for (const [body, message] of bad) {
      const response = await app.request(post(body));
      assert.equal(response.status, 400, JSON.stringify(body));
      assert.match(JSON.stringify(await response.json()), message);
    }
    const outside = { kind: "forget", repo, keep: { last: 1 }, source: "/etc" };
    assert.equal((await app.request(post(outside))).status, 403, "a source outside the roots");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a backup job's progress carries the bytes each channel moved so far, while it runs", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-jobs-" }));
  try {
    await Deno.mkdir(`${root}/src`);
    const content = new Uint8Array(4 * 1024 * 1024);
    for (let offset = 0; offset < content.length; offset += 65536) {
      crypto.getRandomValues(content.subarray(offset, offset + 65536));
    }
    for (let i = 0; i < 8; i++) await Deno.writeFile(`${root}/src/f${i}`, content);
    const region = formatRegion(jobRegionConfig(16, 64, 10_000), crypto.randomUUID());
    assert.ok(region.ok);
    const execute = createJobExecutor({ region: region.value, roots: [root] });
    const reports: Array<{ bytes: number; storageBytes: number; networkBytes: number }> = [];
    const summary = await execute(
      {
        kind: "backup",
        mode: "fs",
        channel: "auto",
        source: `${root}/src`,
        repo: `${root}/repo`,
        incremental: false,
      },
      { signal: new AbortController().signal, report: (progress) => reports.push(progress) },
    ) as { dataPath: string; storageBytes: number };
    assert.equal(summary.dataPath, "storage");
    const moving = reports.filter((r) => r.bytes > 0 && r.bytes < content.length * 8);
    assert.ok(moving.length > 0, "progress was reported while the archive streamed");
    assert.ok(
      moving.some((r) => r.storageBytes > 0),
      `the storage bytes show while it runs: ${JSON.stringify(moving)}`,
    );
    for (const r of moving) assert.ok(r.storageBytes <= summary.storageBytes);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a backup job's bytes never go back: the last report counts what the running ones count (archive bytes)", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "lanfree-jobs-" }));
  try {
    // Many small files: their tar headers make the archive far longer than the files' bytes,
    // which the last report once counted instead (the dashboard saw its bar go back).
    await Deno.mkdir(`${root}/src`);
    const content = new Uint8Array(1024).fill(7);
    for (let i = 0; i < 3000; i++) await Deno.writeFile(`${root}/src/f${i}`, content);
    const execute = createJobExecutor({ region: null, roots: [root] });
    const reports: Array<{ bytes: number; totalBytes: number }> = [];
    const summary = await execute(
      {
        kind: "backup",
        mode: "fs",
        channel: "network",
        source: `${root}/src`,
        repo: `${root}/repo`,
        incremental: false,
      },
      { signal: new AbortController().signal, report: (progress) => reports.push(progress) },
    ) as { archiveBytes: number };
    assert.ok(reports.length >= 2, `progress in steps: ${JSON.stringify(reports)}`);
    for (let i = 1; i < reports.length; i++) {
      assert.ok(
        reports[i]!.bytes >= reports[i - 1]!.bytes,
        `report ${i} went back: ${reports[i - 1]!.bytes} then ${reports[i]!.bytes}`,
      );
    }
    assert.deepEqual(
      reports.at(-1),
      { ...reports.at(-1)!, bytes: summary.archiveBytes, totalBytes: summary.archiveBytes },
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

// One cancel per writer step, by the drill's pause (not by timing): see `cancelAtWriterStep`.
for (
  const [step, ends] of [
    ["locked", "cancelled"],
    ["cleaned", "cancelled"],
    ["manifest-written", "cancelled"],
    ["archive-placed", "cancelled"],
    ["committed", "kept"],
    ["released", "kept"],
  ] as const
) {
  Deno.test(`a DELETE while the server is at writer step ${step} ends the job cancelled (snapshot ${ends === "kept" ? "kept" : "aborted"}) and releases everything`, async () => {
    await cancelAtWriterStep(step, ends);
  });
}
