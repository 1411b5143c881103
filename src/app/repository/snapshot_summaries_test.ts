import assert from "node:assert/strict";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { openRepository, readManifest, repoPaths } from "./repository.ts";
import { listSnapshotSummaries, readEntriesPage, snapshotSummary } from "./snapshot_summaries.ts";
import { withTempDir, writeFileWith } from "../_testing.ts";

async function repoWithTree(dir: string, files: number) {
  await Deno.mkdir(`${dir}/src/d`, { recursive: true });
  for (let i = 0; i < files; i++) await writeFileWith(`${dir}/src/d/f${i}`, "x".repeat(i));
  await Deno.symlink("d/f0", `${dir}/src/link`);
  const summary = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
  return { repo: await openRepository(`${dir}/repo`), id: summary.snapshot };
}

Deno.test("a snapshot summary has the manifest's fields and entry counts, never the entries", async () => {
  await withTempDir(async (dir) => {
    const { repo, id } = await repoWithTree(dir, 5);
    const manifest = await readManifest(repo, id);
    const summary = await snapshotSummary(repo, id);
    assert.deepEqual(summary, {
      id,
      kind: "fs",
      source: manifest.source,
      parent: null,
      createdMs: manifest.createdMs,
      archiveBytes: manifest.archiveBytes,
      channelBytes: manifest.channelBytes,
      entries: { files: 5, dirs: 1, symlinks: 1, fileBytes: 0 + 1 + 2 + 3 + 4 },
      deleted: 0,
    });
    assert.deepEqual(await listSnapshotSummaries(repo), [summary]);
  });
});

Deno.test("a cut-off manifest is listed with its problem instead of failing the listing", async () => {
  await withTempDir(async (dir) => {
    const { repo, id } = await repoWithTree(dir, 3);
    const path = repoPaths.manifest(repo, id);
    await Deno.writeTextFile(path, (await Deno.readTextFile(path)).slice(0, 300));
    const [summary] = await listSnapshotSummaries(repo);
    assert.equal(summary?.id, id);
    assert.match(summary?.problem ?? "", /cut off/);
    await assert.rejects(readEntriesPage(repo, id, 0, 1000), { code: "corrupt" });
  });
});

Deno.test("pages of entries cover the manifest in order, and the last one says there is no more", async () => {
  await withTempDir(async (dir) => {
    const { repo, id } = await repoWithTree(dir, 7);
    const all = (await readManifest(repo, id)).entries;
    const seen = [];
    let offset: number | null = 0;
    for (let pages = 0; offset !== null && pages < 20; pages++) {
      const page: Awaited<ReturnType<typeof readEntriesPage>> = await readEntriesPage(
        repo,
        id,
        offset,
        3,
      );
      assert.ok(page.entries.length <= 3);
      seen.push(...page.entries);
      offset = page.nextOffset;
    }
    assert.deepEqual(seen, all);
    assert.deepEqual((await readEntriesPage(repo, id, 100, 5)).entries, []);
    await assert.rejects(readEntriesPage(repo, id, 0, 1001), RangeError);
    await assert.rejects(readEntriesPage(repo, id, -1, 1), RangeError);
    await assert.rejects(readEntriesPage(repo, "20000101T000000000Z-00000000", 0, 1), {
      code: "unknown-snapshot",
    });
  });
});
