import assert from "node:assert/strict";
import type { Manifest } from "../../core/backup/manifest.ts";
import { forgetSnapshots } from "./forget.ts";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { pruneRepository } from "./prune.ts";
import { listSnapshots, openRepository, repoPaths } from "./repository.ts";
import { restoreSnapshot } from "./restore.ts";
import { verifyRepository } from "./verify.ts";
import { describeTree, gnuTarList, withTempDir, writeFileWith } from "../_testing.ts";

/** Deterministic bytes of a size (a cheap generator: the content only has to differ). */
function bytesOf(sizeBytes: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(sizeBytes);
  let x = seed | 1;
  for (let i = 0; i < sizeBytes; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

/** `count` files of 32-64 KiB under `root/d<i % 4>/`. */
async function writeFiles(root: string, count: number, seed: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await Deno.mkdir(`${root}/d${i % 4}`, { recursive: true });
    const size = 32_768 + ((i * 7919 + seed) % 32_768);
    await writeFileWith(`${root}/d${i % 4}/f${i}`, bytesOf(size, seed * 1000 + i));
  }
}

/** Changes two files in five (new content and mtime), a different two each round. */
async function changeFiles(root: string, count: number, round: number) {
  for (let i = 0; i < count; i++) {
    if ((i * (round + 1)) % 5 >= 2) continue;
    const size = 32_768 + ((i * 31 + round) % 32_768);
    const mtime = 1_600_000_000 + round;
    await writeFileWith(`${root}/d${i % 4}/f${i}`, bytesOf(size, round * 7777 + i), 0o644, mtime);
  }
}

/** Snapshots of one source: a full one, then `incrementals` after changes; trees as taken. */
async function history(dir: string, incrementals: number, files = 24) {
  const source = `${dir}/src`;
  const repo = `${dir}/repo`;
  await writeFiles(source, files, 1);
  const trees = new Map<string, Awaited<ReturnType<typeof describeTree>>>();
  for (let round = 0; round <= incrementals; round++) {
    if (round > 0) await changeFiles(source, files, round);
    const summary = await runLocalBackup({ source, repo, incremental: round > 0 });
    trees.set(summary.snapshot, await describeTree(source));
  }
  return { source, repo, trees };
}

/** Archives in the repository that no manifest references and that are no snapshot's own. */
async function unreferenced(repo: string): Promise<string[]> {
  const manifests = await listSnapshots(await openRepository(repo));
  const used = new Set(manifests.flatMap((m) => [m.id, ...fileData(m)]));
  const archives: string[] = [];
  for await (const item of Deno.readDir(`${repo}/snapshots`)) {
    if (item.name.endsWith(".tar") && !used.has(item.name.slice(0, -4))) archives.push(item.name);
  }
  return archives;
}

function fileData(manifest: Manifest): string[] {
  return manifest.entries.flatMap((e) => (e.type === "file" ? [e.data] : []));
}

async function expectRestorable(repo: string, trees: Map<string, unknown>, out: string) {
  const report = await verifyRepository(repo);
  assert.ok(report.ok, JSON.stringify(report.problems));
  for (const snapshot of report.snapshots) {
    await restoreSnapshot({ repo, snapshot, target: `${out}/${snapshot}` });
    assert.deepEqual(await describeTree(`${out}/${snapshot}`), trees.get(snapshot), snapshot);
  }
  assert.deepEqual(await unreferenced(repo), []);
}

Deno.test("prune repacks forgotten archives a kept snapshot reads in part, rewrites its references, and removes the rest", async () => {
  await withTempDir(async (dir) => {
    const { repo, trees } = await history(dir, 2);
    const [a, b, c] = [...trees.keys()];
    await forgetSnapshots({ repo, rules: { last: 1 } });
    const report = await pruneRepository({ repo });
    const verdicts = Object.fromEntries(report.archives.map((x) => [x.id, x.action]));
    assert.deepEqual(verdicts, { [a!]: "repack", [b!]: "repack", [c!]: "keep" });
    assert.deepEqual(report.manifestsRewritten, [c]);
    assert.ok(report.bytesAfter < report.bytesBefore);
    const manifest = (await listSnapshots(await openRepository(repo)))[0]!;
    const newArchives = [...new Set(fileData(manifest))].filter((id) => id !== c).sort();
    assert.deepEqual(
      newArchives,
      report.archives.filter((x) => x.action === "repack").map((x) => x.into!.id!).sort(),
    );
    for (const id of [a, b]) {
      assert.equal(await Deno.stat(repoPaths.archive({ path: repo }, id!)).catch(() => null), null);
    }
    // A repacked archive is still a tar GNU tar reads, holding exactly the members C reads.
    const listed = (await Promise.all(
      newArchives.map((id) => gnuTarList(repoPaths.archive({ path: repo }, id))),
    )).flat().sort();
    const fromOld = manifest.entries.filter((e) => e.type === "file" && e.data !== c);
    assert.deepEqual(listed, fromOld.map((e) => e.path).sort());
    trees.delete(a!);
    trees.delete(b!);
    await expectRestorable(repo, trees, `${dir}/out`);
  });
});

Deno.test("after prune the bytes on disk are within 10% of what the kept snapshots need", async () => {
  await withTempDir(async (dir) => {
    const { repo, trees } = await history(dir, 9);
    await forgetSnapshots({ repo, rules: { last: 3 } });
    await pruneRepository({ repo });
    const manifests = await listSnapshots(await openRepository(repo));
    assert.equal(manifests.length, 3);
    const members = new Map<string, number>();
    for (const manifest of manifests) {
      for (const e of manifest.entries) {
        if (e.type === "file") members.set(`${e.data}@${e.offset}`, e.sizeBytes);
      }
    }
    let needed = [...members.values()].reduce((sum, n) => sum + n, 0);
    let onDisk = 0;
    for await (const item of Deno.readDir(`${repo}/snapshots`)) {
      const size = (await Deno.stat(`${repo}/snapshots/${item.name}`)).size;
      onDisk += size;
      if (item.name.endsWith(".manifest.json")) needed += size;
    }
    assert.ok(onDisk <= 1.1 * needed, `${onDisk} bytes on disk, kept snapshots need ${needed}`);
    for (const id of [...trees.keys()]) if (!manifests.some((m) => m.id === id)) trees.delete(id);
    await expectRestorable(repo, trees, `${dir}/out`);
  });
});

Deno.test("an archive stays whole while its unused share is at most --max-unused, and is repacked above", async () => {
  await withTempDir(async (dir) => {
    const { repo } = await history(dir, 1, 12);
    await forgetSnapshots({ repo, rules: { last: 1 } });
    const lenient = await pruneRepository({ repo, dryRun: true, maxUnusedPercent: 100 });
    assert.deepEqual(lenient.archives.map((a) => a.action), ["keep", "keep"]);
    assert.match(lenient.archives[0]!.reason, /kept whole: \d+\.\d% unused/);
    const strict = await pruneRepository({ repo, dryRun: true, maxUnusedPercent: 0 });
    assert.deepEqual(strict.archives.map((a) => a.action), ["repack", "keep"]);
    await assert.rejects(pruneRepository({ repo, maxUnusedPercent: 101 }), RangeError);
  });
});

Deno.test("prune --dry-run reports what it would do and changes nothing", async () => {
  await withTempDir(async (dir) => {
    const { repo } = await history(dir, 2, 12);
    await forgetSnapshots({ repo, rules: { last: 1 } });
    const before = await describeTree(repo);
    const dry = await pruneRepository({ repo, dryRun: true });
    assert.deepEqual(await describeTree(repo), before);
    assert.equal(dry.dryRun, true);
    const real = await pruneRepository({ repo });
    assert.deepEqual(
      real.archives.map((a) => [a.id, a.action, a.into?.sizeBytes]),
      dry.archives.map((a) => [a.id, a.action, a.into?.sizeBytes]),
    );
    assert.equal(real.bytesAfter, dry.bytesAfter);
    const again = await pruneRepository({ repo });
    assert.deepEqual(
      again.archives.map((a) => a.action),
      real.archives.filter((a) => a.action !== "remove").map(() => "keep"),
    );
  });
});

Deno.test("prune refuses a repository with an unreadable manifest and changes nothing", async () => {
  await withTempDir(async (dir) => {
    const { repo, trees } = await history(dir, 1, 8);
    await forgetSnapshots({ repo, rules: { last: 1 } });
    const kept = [...trees.keys()][1]!;
    await Deno.writeTextFile(repoPaths.manifest({ path: repo }, kept), "{}");
    const before = await describeTree(repo);
    await assert.rejects(pruneRepository({ repo }), { code: "corrupt", message: new RegExp(kept) });
    assert.deepEqual(await describeTree(repo), before);
  });
});

Deno.test("repacking copies members byte for byte: hard links, long names (PAX) and owners survive", async () => {
  await withTempDir(async (dir) => {
    const source = `${dir}/src`;
    const repo = `${dir}/repo`;
    const long = `${"n".repeat(120)}.txt`;
    await Deno.mkdir(source);
    await writeFileWith(`${source}/primary`, bytesOf(5000, 3));
    await Deno.link(`${source}/primary`, `${source}/second`);
    await writeFileWith(`${source}/${long}`, bytesOf(7000, 4));
    await Deno.chown(`${source}/${long}`, 1234, 5678);
    await writeFileWith(`${source}/changes`, "one");
    await runLocalBackup({ source, repo });
    await writeFileWith(`${source}/changes`, "two", 0o644, 1_700_000_000);
    const kept = await runLocalBackup({ source, repo, incremental: true });
    await forgetSnapshots({ repo, rules: { last: 1 } });
    const report = await pruneRepository({ repo, maxUnusedPercent: 0 });
    assert.deepEqual(report.archives.map((a) => a.action).sort(), ["keep", "repack"]);
    await restoreSnapshot({ repo, snapshot: kept.snapshot, target: `${dir}/out` });
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(source));
    const [one, two] = [
      await Deno.stat(`${dir}/out/primary`),
      await Deno.stat(`${dir}/out/second`),
    ];
    assert.equal(one.ino, two.ino, "the hard link is restored as a link");
    const owned = await Deno.stat(`${dir}/out/${long}`);
    assert.deepEqual([owned.uid, owned.gid], [1234, 5678]);
    const repacked = report.archives.find((a) => a.action === "repack")!.into!.id!;
    const listed = await gnuTarList(repoPaths.archive({ path: repo }, repacked));
    assert.deepEqual(listed.sort(), [long, "primary", "second"]);
  });
});

Deno.test("a version-1 repository (no member offsets) is pruned: members are found by name", async () => {
  await withTempDir(async (dir) => {
    const repo = `${dir}/repo`;
    const fixture = new URL("../../../fixtures/repo-v1", import.meta.url).pathname;
    await new Deno.Command("cp", { args: ["-r", fixture, repo] }).output();
    const [, newer] = (await listSnapshots(await openRepository(repo))).map((m) => m.id);
    await restoreSnapshot({ repo, snapshot: newer!, target: `${dir}/before` });
    await forgetSnapshots({ repo, rules: { last: 1 } });
    const report = await pruneRepository({ repo, maxUnusedPercent: 0 });
    assert.deepEqual(report.manifestsRewritten, [newer]);
    await restoreSnapshot({ repo, snapshot: newer!, target: `${dir}/after` });
    assert.deepEqual(await describeTree(`${dir}/after`), await describeTree(`${dir}/before`));
    assert.ok((await verifyRepository(repo)).ok);
    assert.deepEqual(await unreferenced(repo), []);
  });
});
