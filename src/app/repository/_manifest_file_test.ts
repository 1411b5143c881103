import assert from "node:assert/strict";
import {
  type ManifestFile,
  ManifestFileWriter,
  readLines,
  streamManifestFile,
} from "./_manifest_file.ts";
import { MANIFEST_FORMAT, MANIFEST_VERSION } from "../../core/backup/manifest.ts";
import { RepositoryError } from "../errors.ts";
import { withTempDir } from "../_testing.ts";

/** Holds the thread for `ms` without giving the event loop a turn (a slow entry check). */
function busyMs(ms: number): void {
  const untilMs = performance.now() + ms;
  // Bounded by the clock.
  while (performance.now() < untilMs) { /* holds the thread */ }
}

Deno.test("reading a manifest's lines lets timers run while the lines are checked, so a host's lease timer is never held up by a long manifest", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/m.jsonl`;
    const lines = 200;
    // 200 short lines, each ended: one read of the file holds them all.
    const text = Array.from({ length: lines }, (_, i) => `{"n":${i}}\n`).join("");
    await Deno.writeTextFile(path, text);
    let timerRan = false;
    let timerRanBeforeLastLine = false;
    let seen = 0;
    await readLines(path, () => {
      if (seen === 0) setTimeout(() => (timerRan = true), 0);
      seen++;
      busyMs(1); // 200 lines hold the thread for 200 ms: longer than a short lease
      if (seen === lines) timerRanBeforeLastLine = timerRan;
    });
    assert.equal(seen, lines);
    assert.ok(
      timerRanBeforeLastLine,
      "a timer set at the first line did not run before the last line: the reader held the " +
        "thread for the whole file",
    );
  });
});

/** A line-layout manifest of `count` files under `d/` with long non-ASCII names (over 1 MiB). */
async function bigManifest(path: string, id: string, count: number): Promise<ManifestFile> {
  const head = {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    id,
    kind: "fs" as const,
    source: "/src",
    parent: null,
    createdMs: 0,
    archiveBytes: 1024 * (count + 2),
  } as const;
  const writer = await ManifestFileWriter.create(path, head);
  await writer.entry(JSON.stringify({ type: "dir", path: "d", mode: 0o755, mtimeMs: 0 }));
  for (let i = 0; i < count; i++) {
    const name = `d/${String(i).padStart(6, "0")}-${"äöü€".repeat(20)}`;
    const sha256 = (i % 16).toString(16).repeat(64);
    await writer.entry(JSON.stringify({
      type: "file",
      path: name,
      mode: 0o644,
      mtimeMs: i,
      sizeBytes: 1,
      sha256,
      data: id,
      offset: 1024 * (i + 1),
    }));
  }
  await writer.deleted("gone");
  await writer.finish({ storage: 5, network: 6 });
  return {
    path,
    id,
    repoPath: "/repo",
    readWhole: () => Promise.reject(new Error("not read whole")),
  };
}

Deno.test("a trusted manifest read in blocks hands over exactly the entry lines, head, deleted paths and counters of the checked read", async () => {
  await withTempDir(async (dir) => {
    const id = "19700101T000000000Z-00000000";
    const source = await bigManifest(`${dir}/m.json`, id, 8000);
    assert((await Deno.stat(source.path)).size > 2 << 20, "several blocks");
    const checked: string[] = [];
    const checkedDeleted: string[] = [];
    const one = await streamManifestFile(source, {
      entryLine: (line) => void checked.push(line),
      deleted: (path) => void checkedDeleted.push(path),
    });
    const blocks: string[] = [];
    const heads: unknown[] = [];
    const deleted: string[] = [];
    const two = await streamManifestFile(source, {
      head: (head) => void heads.push(head),
      entryBlock: (lines) => void blocks.push(lines),
      deleted: (path) => void deleted.push(path),
    }, true);
    assert(blocks.length > 1);
    assert.deepEqual(blocks.join("\n").split("\n"), checked);
    assert.equal(checked.length, 8001);
    assert.deepEqual([two.entries, two.head, two.lineLayout], [one.entries, one.head, true]);
    assert.deepEqual(two.head.channelBytes, { storage: 5, network: 6 });
    assert.deepEqual([heads.length, deleted, checkedDeleted], [1, ["gone"], ["gone"]]);
  });
});

Deno.test("a trusted block read passes a handler's own failure through, and names a cut-off file corrupt", async () => {
  await withTempDir(async (dir) => {
    const source = await bigManifest(`${dir}/m.json`, "19700101T000000000Z-00000000", 10);
    const own = new Error("the session broke");
    await assert.rejects(
      streamManifestFile(source, { entryBlock: () => Promise.reject(own) }, true),
      (error) => error === own,
    );
    const file = await Deno.open(source.path, { write: true });
    await file.truncate((await file.stat()).size - 40);
    file.close();
    await assert.rejects(
      streamManifestFile(source, { entryBlock: () => {} }, true),
      (error) =>
        error instanceof RepositoryError && /is invalid: .*(cut off|layout)/.test(error.message),
    );
  });
});
