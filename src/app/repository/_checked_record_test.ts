import assert from "node:assert/strict";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { forgetSnapshots } from "./forget.ts";
import { pruneRepository } from "./prune.ts";
import { consolidateSnapshot } from "./consolidate.ts";
import { repoPaths } from "./repository.ts";
import { type CheckedRecord, fileSha256, vouchingRecord } from "./_checked_record.ts";
import { withTempDir, writeFileWith } from "../_testing.ts";

/** A source of a few files, backed up once (A) and once incrementally (B, one file changed). */
async function chainOfTwo(dir: string) {
  await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
  await writeFileWith(`${dir}/src/a`, "alpha");
  for (let i = 0; i < 3; i++) await writeFileWith(`${dir}/src/sub/f${i}`, `file ${i}`.repeat(300));
  const source = `${dir}/src`;
  const repo = { path: `${dir}/repo` };
  const a = await runLocalBackup({ source, repo: repo.path });
  await writeFileWith(`${source}/a`, "alpha, changed", 0o644, 1_700_000_000);
  const b = await runLocalBackup({ source, repo: repo.path, incremental: true });
  assert.equal(b.parent, a.snapshot);
  return { source, repo, a: a.snapshot, b: b.snapshot };
}

async function readRecord(repo: { path: string }, id: string): Promise<CheckedRecord> {
  return JSON.parse(await Deno.readTextFile(repoPaths.checked(repo, id))) as CheckedRecord;
}

async function writeRecord(repo: { path: string }, record: CheckedRecord): Promise<void> {
  await Deno.writeTextFile(repoPaths.checked(repo, record.id), JSON.stringify(record));
}

Deno.test("a committed backup leaves a record of its manifest's SHA-256, size, entries and archive needs", async () => {
  await withTempDir(async (dir) => {
    const { repo, a, b } = await chainOfTwo(dir);
    const record = await readRecord(repo, b);
    const manifest = repoPaths.manifest(repo, b);
    assert.equal(record.id, b);
    assert.equal(record.manifest.sha256, await fileSha256(manifest));
    assert.equal(record.manifest.bytes, (await Deno.stat(manifest)).size);
    assert.equal(record.entries, 5, "the root's children: a, sub, and sub's three files");
    assert.equal(record.filesWithoutOffset, 0, "every member written by this code is placed");
    assert.deepEqual(
      Object.keys(record.archives),
      [a, b],
      "B reads three files from A, one from B",
    );
    assert(
      record.archives[b]! > 512 &&
        record.archives[b]! <= (await Deno.stat(repoPaths.archive(repo, b))).size,
    );
  });
});

Deno.test("an incremental checks the archives against a matching record's needs, without re-reading the parent", async () => {
  await withTempDir(async (dir) => {
    const { source, repo, a, b } = await chainOfTwo(dir);
    // The manifest still hashes as recorded, so the record is believed: it claims A's members
    // reach far past A's end, which only the record says (the manifest does not).
    const record = await readRecord(repo, b);
    await writeRecord(repo, { ...record, archives: { ...record.archives, [a]: 1 << 30 } });
    const c = await runLocalBackup({ source, repo: repo.path, incremental: true });
    assert.equal(c.parent, null);
    assert.match(
      c.fullReason ?? "",
      new RegExp(`archive of snapshot ${a} has \\d+ bytes; its members need at least ${1 << 30}`),
    );
  });
});

Deno.test("a tampered parent manifest of the recorded size is still refused: its hash no longer matches", async () => {
  await withTempDir(async (dir) => {
    const { source, repo, b } = await chainOfTwo(dir);
    const path = repoPaths.manifest(repo, b);
    const text = await Deno.readTextFile(path);
    const at = text.indexOf('"sha256":"') + '"sha256":"'.length;
    await Deno.writeTextFile(path, `${text.slice(0, at)}z${text.slice(at + 1)}`); // same size
    const c = await runLocalBackup({ source, repo: repo.path, incremental: true });
    assert.equal(c.parent, null, "not built on a manifest with an invalid entry");
    assert.match(c.fullReason ?? "", new RegExp(`manifest of snapshot ${b} cannot be read`));
  });
});

Deno.test("a record whose hash or shape is wrong is ignored and the parent is checked in full", async () => {
  await withTempDir(async (dir) => {
    const { source, repo, a, b } = await chainOfTwo(dir);
    const record = await readRecord(repo, b);
    // Believed, these needs would break the chain; the wrong hash makes the record unused.
    const lying = { ...record, archives: { [a]: 1 << 30 } };
    await writeRecord(repo, { ...lying, manifest: { ...record.manifest, sha256: "0".repeat(64) } });
    const c = await runLocalBackup({ source, repo: repo.path, incremental: true });
    assert.deepEqual([c.parent, c.fullReason], [b, null]);
    await Deno.writeTextFile(
      repoPaths.checked(repo, c.snapshot),
      '{"format":"lanfree-checked","ver',
    );
    const d = await runLocalBackup({ source, repo: repo.path, incremental: true });
    assert.deepEqual([d.parent, d.fullReason], [c.snapshot, null]);
  });
});

Deno.test("a repository written before checked records builds incrementals as before and gains records", async () => {
  await withTempDir(async (dir) => {
    const { source, repo, a, b } = await chainOfTwo(dir);
    for (const id of [a, b]) await Deno.remove(repoPaths.checked(repo, id));
    const c = await runLocalBackup({ source, repo: repo.path, incremental: true });
    assert.deepEqual([c.parent, c.fullReason, c.files], [b, null, 0]);
    assert.equal((await readRecord(repo, c.snapshot)).id, c.snapshot);
    await Deno.remove(repoPaths.archive(repo, a));
    const d = await runLocalBackup({ source, repo: repo.path, incremental: true });
    assert.match(d.fullReason ?? "", new RegExp(`archive of snapshot ${a} is missing`));
  });
});

Deno.test("forget removes a forgotten snapshot's checked record with its manifest, and keeps the kept one's", async () => {
  await withTempDir(async (dir) => {
    const { repo, a, b } = await chainOfTwo(dir);
    const report = await forgetSnapshots({ repo: repo.path, rules: { last: 1 }, timeZone: "UTC" });
    assert.deepEqual(report.removed, [a]);
    const exists = (path: string) => Deno.stat(path).then(() => true, () => false);
    assert.deepEqual(
      [await exists(repoPaths.checked(repo, a)), await exists(repoPaths.checked(repo, b))],
      [false, true],
    );
  });
});

/** The snapshots whose checked record is left without vouching for a manifest (junk). */
async function staleRecords(repo: { path: string }): Promise<string[]> {
  const stale: string[] = [];
  for await (const item of Deno.readDir(`${repo.path}/snapshots`)) {
    if (!item.name.endsWith(".checked.json")) continue;
    const id = item.name.slice(0, -".checked.json".length);
    if (await vouchingRecord(repo, id) === undefined) stale.push(id);
  }
  return stale.sort();
}

Deno.test("prune removes the checked record of a snapshot whose manifest is gone (a forget killed between the two)", async () => {
  await withTempDir(async (dir) => {
    const { repo, a, b } = await chainOfTwo(dir);
    // What a forget killed after removing A's manifest, before its record, leaves.
    await Deno.remove(repoPaths.manifest(repo, a));
    assert.deepEqual(await staleRecords(repo), [a]);
    // A's archive stays whole (B reads it in part; no share unused is too much), B's manifest too.
    const options = { repo: repo.path, maxUnusedPercent: 100 };
    await pruneRepository({ ...options, dryRun: true });
    assert.deepEqual(await staleRecords(repo), [a], "a dry run changes nothing");
    const report = await pruneRepository(options);
    assert.deepEqual(report.manifestsRewritten, []);
    assert.deepEqual(await staleRecords(repo), []);
    assert.ok(await vouchingRecord(repo, b), "the kept snapshot's record stays");
  });
});

Deno.test("prune that rewrites a kept manifest leaves no record of the manifest it replaced", async () => {
  await withTempDir(async (dir) => {
    const { repo, a, b } = await chainOfTwo(dir);
    await forgetSnapshots({ repo: repo.path, rules: { last: 1 }, timeZone: "UTC" });
    // B reads A's three files but not A's `a`: repacked (any unused share is too much).
    const report = await pruneRepository({ repo: repo.path, maxUnusedPercent: 0 });
    assert.deepEqual(
      [report.archives.find((x) => x.id === a)?.action, report.manifestsRewritten],
      ["repack", [b]],
    );
    assert.deepEqual(await staleRecords(repo), []);
  });
});

Deno.test("consolidate leaves no record of the manifest it replaced", async () => {
  await withTempDir(async (dir) => {
    const { repo, b } = await chainOfTwo(dir);
    const report = await consolidateSnapshot({ repo: repo.path, snapshot: b });
    assert.equal(report.alreadyFull, false);
    assert.deepEqual(await staleRecords(repo), []);
  });
});
