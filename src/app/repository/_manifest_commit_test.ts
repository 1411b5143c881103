import assert from "node:assert/strict";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { initRepository, repoPaths, streamManifest } from "./repository.ts";
import { beginSnapshot, type SnapshotWriter } from "./snapshot_writer.ts";
import { receiveManifestLines, type RunLinesParent } from "./_manifest_commit.ts";
import { RepositoryError } from "../errors.ts";
import { type CheckedRecord, vouchingRecord } from "./_checked_record.ts";
import { withTempDir, writeFileWith } from "../_testing.ts";

const PAST_S = 1_600_000_000;
const NO_BYTES = { storage: 0, network: 0 };

/** A committed parent of 2 directories of 6 files each, and a writer for the next snapshot. */
async function parentAndWriter(dir: string) {
  for (const sub of ["a", "b"]) {
    await Deno.mkdir(`${dir}/src/${sub}`, { recursive: true });
    for (let i = 0; i < 6; i++) {
      await writeFileWith(`${dir}/src/${sub}/f${i}`, `${sub}${i}\n`, 0o644, PAST_S);
    }
  }
  await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
  const repo = await initRepository(`${dir}/repo`);
  const [parentId] = (await Array.fromAsync(Deno.readDir(`${dir}/repo/snapshots`)))
    .map((item) => item.name).filter((name) => name.endsWith(".manifest.json"))
    .map((name) => name.slice(0, -".manifest.json".length));
  const entries: string[] = [];
  let parentHead: Record<string, unknown> = {};
  await streamManifest(repo, parentId!, {
    head: (head) => {
      parentHead = { ...head };
    },
    entryLine: (line) => void entries.push(line),
  });
  const writer = await beginSnapshot(repo);
  const head = JSON.stringify({ ...parentHead, id: writer.id, parent: parentId });
  return {
    writer,
    head,
    entries,
    parentPath: { manifestPath: repoPaths.manifest(repo, parentId!) },
  };
}

/** The temporary manifest `lines` make (finished, then removed), or the refusal. */
async function received(
  writer: SnapshotWriter,
  lines: string[],
  parentPath: RunLinesParent | undefined,
): Promise<string> {
  return await finished(await receiveManifestLines(writer, lines, parentPath));
}

Deno.test("run lines make a manifest byte for byte the one plain lines make", async () => {
  await withTempDir(async (dir) => {
    const { writer, head, entries, parentPath } = await parentAndWriter(dir);
    try {
      assert.equal(entries.length, 14); // a, a/f0..5, b, b/f0..5
      // Entry 4 changed (its mtime), entry 9 is gone, one file is new after entry 11.
      const changed = JSON.stringify({ ...JSON.parse(entries[4]!), mtimeMs: PAST_S * 1000 + 1 });
      const added = entries[11]!.replace('"b/f3"', '"b/f3x"');
      const plain = [head, ...entries.slice(0, 4), changed, ...entries.slice(5, 9)];
      plain.push(...entries.slice(10, 12), added, ...entries.slice(12), JSON.stringify("b/gone"));
      const runs = [head, "[0,4]", changed, "[5,4]", "[10,2]", added, "[12,2]", '"b/gone"'];
      const fromPlain = await received(writer, plain, undefined);
      const fromRuns = await received(writer, runs, parentPath);
      assert.equal(fromRuns, fromPlain);
      const whole = await received(writer, [head, "[0,14]"], parentPath);
      assert.equal(whole, await received(writer, [head, ...entries], undefined));
    } finally {
      await writer.abort();
    }
  });
});

Deno.test("a server that offered run lines still takes plain lines (a client older than runs)", async () => {
  await withTempDir(async (dir) => {
    const { writer, head, entries, parentPath } = await parentAndWriter(dir);
    try {
      const plain = await received(writer, [head, ...entries], parentPath);
      assert.equal(plain, await received(writer, [head, ...entries], undefined));
    } finally {
      await writer.abort();
    }
  });
});

Deno.test("every lie in a run line is a bad-commit naming it, and the temporary manifest is removed", async () => {
  await withTempDir(async (dir) => {
    const { writer, head, entries, parentPath } = await parentAndWriter(dir);
    const lies: Array<[string[], RunLinesParent | undefined, RegExp]> = [
      [[head, "[0,2]"], undefined, /run line \[0,2\], but the server offered none/],
      [[head, "[0,15]"], parentPath, /goes past the parent's 14 entries/],
      [[head, "[14,1]"], parentPath, /goes past the parent's 14 entries/],
      [[head, "[0,3]", "[2,2]"], parentPath, /run \[2,2\] goes back/],
      [[head, "[0,3]", "[0,1]"], parentPath, /goes back/],
      // Entries 7.. (b, b/f0..) before 1.. (a/f0..): path order broken by the copy.
      [[head, "[0,1]", "[7,2]", entries[1]!], parentPath, /out of path order/],
      [[head, "[0,1]", entries[2]!, "[1,1]"], parentPath, /run \[1,1\] goes back|out of path/],
      // A file under b before b: the tree rule holds for copied lines too.
      [[head, "[0,7]", "[8,1]"], parentPath, /run \[8,1\]: entry "b\/f0": its parent "b"/],
      [[head, "[0,2]", '"a/x"', "[2,1]"], parentPath, /an entry after the deleted paths/],
      [[head, "[0]"], parentPath, /run: expected \[from,count\]/],
      [[head, "[0,1,2]"], parentPath, /run: expected \[from,count\]/],
      [[head, "[-1,1]"], parentPath, /from -1 is not an entry position/],
      [[head, "[1.5,1]"], parentPath, /from 1.5 is not an entry position/],
      [[head, '["0",1]'], parentPath, /from "0" is not an entry position/],
      [[head, "[0,0]"], parentPath, /count 0 is not a count of entries/],
      [[head, "[0,null]"], parentPath, /count null is not a count of entries/],
      [[head, "[0,1e300]"], parentPath, /count 1e\+300 is not a count of entries/],
    ];
    try {
      for (const [lines, offered, expected] of lies) {
        await assert.rejects(
          receiveManifestLines(writer, lines, offered),
          (error) =>
            error instanceof RepositoryError && error.code === "bad-commit" &&
            expected.test(error.message),
          lines.slice(1).join(" "),
        );
        await assert.rejects(Deno.stat(writer.manifestTempPath), Deno.errors.NotFound);
      }
    } finally {
      await writer.abort();
    }
  });
});

Deno.test("a manifest that is one run of all of a vouched parent's entries is that parent's entries, with the counts and chain facts plain lines give", async () => {
  await withTempDir(async (dir) => {
    const { writer, head, entries, parentPath } = await parentAndWriter(dir);
    const parentId = JSON.parse(head).parent as string;
    const vouched = {
      ...parentPath,
      vouchingRecord: () => vouchingRecord(writer.repo, parentId),
    };
    try {
      assert.ok(await vouched.vouchingRecord(), "the parent's commit left a checked record");
      const whole = await receiveManifestLines(writer, [head, "[0,14]"], vouched);
      const wholeFacts = { ...whole.counts, needs: whole.needs.toRecord() };
      const wholeText = await finished(whole);
      const plain = await receiveManifestLines(writer, [head, ...entries], undefined);
      assert.deepEqual(wholeFacts, { ...plain.counts, needs: plain.needs.toRecord() });
      assert.equal(whole.filesWithoutOffset, plain.filesWithoutOffset);
      assert.equal(wholeText, await finished(plain));
    } finally {
      await writer.abort();
    }
  });
});

Deno.test("a vouched parent's lines are copied unchecked only when the manifest is that one whole run", async () => {
  await withTempDir(async (dir) => {
    const { writer, head, parentPath } = await parentAndWriter(dir);
    // The parent's file with two entries swapped, and a record said to vouch for it: only the
    // whole copy trusts the record, so only it takes the swapped lines.
    const file = (await Deno.readTextFile(parentPath.manifestPath)).split("\n");
    [file[2], file[3]] = [file[3]!, file[2]!];
    await Deno.writeTextFile(parentPath.manifestPath, file.join("\n"));
    const record = { ...(await vouchingRecordShape(writer, JSON.parse(head).parent)), entries: 14 };
    const vouched = { ...parentPath, vouchingRecord: () => Promise.resolve(record) };
    try {
      const whole = await receiveManifestLines(writer, [head, "[0,14]"], vouched);
      assert.equal(whole.counts.entryCount, 14);
      await finished(whole);
      const refusals: Array<[string[], RunLinesParent]> = [
        [[head, "[0,14]"], { ...parentPath, vouchingRecord: () => Promise.resolve(undefined) }],
        [[head, "[0,14]"], parentPath],
        [[head, "[0,14]", '"gone"'], vouched],
        [[head, "[0,13]"], vouched],
      ];
      for (const [lines, parent] of refusals) {
        await assert.rejects(
          receiveManifestLines(writer, lines, parent),
          (error) => error instanceof RepositoryError && /out of path order/.test(error.message),
          lines.slice(1).join(" "),
        );
      }
    } finally {
      await writer.abort();
    }
  });
});

/** Finishes a received manifest and returns its text (then removes it). */
async function finished(taken: Awaited<ReturnType<typeof receiveManifestLines>>) {
  await taken.file.finish(NO_BYTES);
  const text = await Deno.readTextFile(taken.file.path);
  await Deno.remove(taken.file.path);
  return text;
}

/** The parent's checked record as written (before its file was changed). */
async function vouchingRecordShape(writer: SnapshotWriter, id: string): Promise<CheckedRecord> {
  return JSON.parse(await Deno.readTextFile(repoPaths.checked(writer.repo, id)));
}
