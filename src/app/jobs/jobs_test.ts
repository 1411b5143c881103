import assert from "node:assert/strict";
import { type JobEvent, JobFailure, JobQueue, JobQueueFullError } from "./jobs.ts";

const verify = { kind: "verify", repo: "/repo" } as const;

Deno.test("jobs run one at a time, in the order they were submitted", async () => {
  const order: string[] = [];
  const queue = new JobQueue(async (request) => {
    order.push(`start ${"repo" in request ? request.repo : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
    order.push(`end ${"repo" in request ? request.repo : ""}`);
  }, () => 0);
  const first = queue.submit({ ...verify, repo: "a" });
  const second = queue.submit({ ...verify, repo: "b" });
  await queue.settled(second.id);
  assert.deepEqual(order, ["start a", "end a", "start b", "end b"]);
  assert.equal(queue.get(first.id)?.state, "succeeded");
});

Deno.test("with runningMax, that many jobs run at once and the rest wait their turn", async () => {
  let running = 0;
  let most = 0;
  const queue = new JobQueue(
    async () => {
      most = Math.max(most, ++running);
      await new Promise((resolve) => setTimeout(resolve, 20));
      running--;
    },
    () => 0,
    { runningMax: 2 },
  );
  const jobs = [1, 2, 3, 4, 5].map((n) => queue.submit({ ...verify, repo: `r${n}` }));
  for (const job of jobs) await queue.settled(job.id);
  assert.equal(most, 2);
  assert.ok(jobs.every((job) => queue.get(job.id)?.state === "succeeded"));
});

Deno.test("a JobFailure fails its job and keeps what it did as the result", async () => {
  const queue = new JobQueue(
    () => Promise.reject(new JobFailure("2 files not restored", { ok: false })),
    () => 0,
  );
  const job = queue.submit(verify);
  await queue.settled(job.id);
  assert.deepEqual([queue.get(job.id)?.state, queue.get(job.id)?.result], ["failed", {
    ok: false,
  }]);
});

Deno.test("a failing job is failed with its message and the next job still runs", async () => {
  const queue = new JobQueue((request) => {
    if ("repo" in request && request.repo === "bad") {
      return Promise.reject(new Error("repository is corrupt"));
    }
    return Promise.resolve("fine");
  }, () => 0);
  const bad = queue.submit({ ...verify, repo: "bad" });
  const good = queue.submit(verify);
  await queue.settled(good.id);
  assert.deepEqual([queue.get(bad.id)?.state, queue.get(bad.id)?.error], [
    "failed",
    "repository is corrupt",
  ]);
  assert.equal(queue.get(good.id)?.result, "fine");
  assert.equal(queue.totals().byState.failed, 1);
});

Deno.test("submit() refuses beyond queuedMax and history keeps at most historyMax ended jobs", async () => {
  let release = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  const queue = new JobQueue(() => gate, () => 0, { queuedMax: 2, historyMax: 3 });
  const running = queue.submit(verify);
  await Promise.resolve();
  queue.submit(verify);
  queue.submit(verify);
  assert.throws(() => queue.submit(verify), JobQueueFullError);
  release();
  await queue.settled(queue.list()[0]!.id);
  for (let i = 0; i < 5; i++) await queue.settled(queue.submit(verify).id);
  assert.ok(queue.list().length <= 3);
  assert.equal(queue.get(running.id), undefined, "the oldest ended job was forgotten");
});

Deno.test("a cancelled queued job never runs; subscribers see every event in order", async () => {
  let release = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  let runs = 0;
  const queue = new JobQueue(async (_request, { report }) => {
    runs++;
    report({ files: 1, bytes: 2, totalBytes: 2, storageBytes: 2, networkBytes: 0 });
    await gate;
  }, () => 0);
  const first = queue.submit(verify);
  const second = queue.submit(verify);
  assert.ok(queue.cancel(second.id));
  assert.equal(queue.cancel(second.id), false, "an ended job cannot be cancelled again");
  const seen: JobEvent[] = [];
  queue.subscribe(first.id, (event) => seen.push(event));
  release();
  await queue.settled(second.id);
  assert.equal(runs, 1);
  assert.equal(queue.get(second.id)?.state, "cancelled");
  assert.deepEqual(seen.map((event) => event.type === "state" ? event.state : "progress"), [
    "running",
    "progress",
    "succeeded",
  ]);
  assert.equal(queue.subscribe("job-404", () => {}), undefined);
});

Deno.test("a running job cancelled too late to stop its work ends succeeded, with the request noted", async () => {
  let release = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  const queue = new JobQueue(async () => {
    await gate; // work that cannot be stopped any more (a snapshot past its commit point)
    return { snapshot: "committed" };
  }, () => 42);
  const job = queue.submit(verify);
  await Promise.resolve();
  assert.ok(queue.cancel(job.id));
  release();
  await queue.settled(job.id);
  const ended = queue.get(job.id)!;
  assert.deepEqual([ended.state, ended.result], ["succeeded", { snapshot: "committed" }]);
  assert.equal(ended.cancelRequestedMs, 42);
});
