import assert from "node:assert/strict";
import { replayCommand, type SeedReport, simulateSeed } from "./simulate.ts";
import { FAULT_KINDS, type FaultKind } from "./world.ts";

Deno.test("a clean seed backs up, commits, restores over the channels and leaves nothing", async () => {
  const report = await simulateSeed(1, []);
  assert.equal(report.run.fault, "none");
  assert.deepEqual(report.violations, []);
  assert.equal(report.run.backup.client.status, "done");
  assert.equal(report.run.backup.server.status, "done");
  assert.equal(report.run.restore.receiver.status, "done");
  assert.ok(report.run.committed !== undefined);
});

Deno.test("an incremental seed gets the parent's parts, and the restore over the channels reads both archives", async () => {
  const report = await firstSeed([], (r) => r.run.trace.some((line) => line.includes("on parent")));
  assert.deepEqual(report.violations, [], report.run.trace.join("\n"));
  assert.equal(report.run.restore.receiver.status, "done");
});

Deno.test("the same seed gives the same run, event for event, under every fault kind", async () => {
  for (const kind of FAULT_KINDS) {
    const first = await firstSeed([kind], (r) => r.run.fault === kind);
    const again = await simulateSeed(first.seed, [kind]);
    assert.deepEqual(again.run.trace, first.run.trace, replayCommand(first.seed, [kind]));
  }
});

Deno.test("every fault kind fires in some seed and the invariants hold", async () => {
  const fired = new Set<string>();
  for (const kind of FAULT_KINDS) {
    // Bounded: a kind is drawn by about half the seeds that allow it alone.
    for (let seed = 1; seed <= 40 && !fired.has(kind); seed++) {
      const report = await simulateSeed(seed, [kind]);
      assert.deepEqual(report.violations, [], replayCommand(seed, [kind]));
      report.run.fired.forEach((k) => fired.add(k));
    }
  }
  assert.deepEqual([...fired].sort(), [...FAULT_KINDS].sort());
});

/** The first seed of 1..200 under `faults` whose run satisfies `wanted`. */
async function firstSeed(
  faults: readonly FaultKind[],
  wanted: (report: SeedReport) => boolean,
): Promise<SeedReport> {
  for (let seed = 1; seed <= 200; seed++) {
    const report = await simulateSeed(seed, faults);
    if (wanted(report)) return report;
  }
  throw new Error(`no seed of 1..200 under ${faults.join(",")} gave the run wanted`);
}

Deno.test("a server whose committed message cannot reach the client still reports its snapshot", async () => {
  // The control connection closes at the server's `committed` send (seed 140 when this was
  // found): before the fix the server reported failed while the repository held the snapshot.
  const report = await firstSeed(
    ["close"],
    (r) => r.run.backup.client.status === "failed" && r.run.committed !== undefined,
  );
  assert.deepEqual(report.violations, [], report.run.trace.join("\n"));
  assert.equal(report.run.backup.server.status, "done");
});

Deno.test("a directory sync that fails past the commit point leaves the snapshot whole", async () => {
  // The sync of snapshots/ after the manifest's rename fails (seed 23 when this was found):
  // before the fix the writer removed the archive and left its manifest, a snapshot that
  // cannot be restored.
  const report = await firstSeed(
    ["io-error-sync"],
    (r) => r.run.trace.some((line) => /io-error-sync at sync directory .*snapshots$/.test(line)),
  );
  assert.deepEqual(report.violations, [], report.run.trace.join("\n"));
  assert.equal(report.run.backup.server.status, "done");
});

Deno.test("a crash loses the unsynced renames and the next writer's clean-up restores the repository", async () => {
  const report = await firstSeed(
    ["crash"],
    (r) => r.run.serverCrashed && r.run.trace.some((line) => /rename of .* lost/.test(line)),
  );
  assert.equal(report.run.committed, undefined);
  assert.deepEqual(report.violations, [], report.run.trace.join("\n"));
});

Deno.test("a crash after a reported commit keeps the snapshot (it was durable)", async () => {
  const report = await firstSeed(
    ["crash"],
    (r) => r.run.serverCrashed && r.run.committed !== undefined,
  );
  assert.ok(report.run.trace.some((line) => line.includes("power loss after")));
  assert.deepEqual(report.violations, [], report.run.trace.join("\n"));
});

Deno.test("1,000 seeds of the simulated world hold every invariant", async () => {
  const failed: string[] = [];
  for (let seed = 1; seed <= 1000; seed++) {
    const report = await simulateSeed(seed);
    if (report.violations.length > 0) {
      failed.push(`${replayCommand(seed, FAULT_KINDS)}: ${report.violations.join("; ")}`);
    }
  }
  assert.deepEqual(failed, []);
});
