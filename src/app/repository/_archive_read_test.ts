import assert from "node:assert/strict";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { openRepository, readManifest, repoPaths } from "./repository.ts";
import { MEMBER_SCRATCH_BYTES, openArchive, openMember } from "./_archive_read.ts";
import { restoreSnapshot } from "./restore.ts";
import { describeTree, withTempDir } from "../_testing.ts";

/** A tree with files of one piece and of several (over one read). */
async function mixedTree(root: string): Promise<void> {
  await Deno.mkdir(`${root}/d`, { recursive: true });
  const big = new Uint8Array(MEMBER_SCRATCH_BYTES * 2 + 12_345);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 0xff;
  await Deno.writeFile(`${root}/d/big.bin`, big);
  for (let i = 0; i < 20; i++) await Deno.writeTextFile(`${root}/d/small-${i}.txt`, `file ${i}\n`);
}

Deno.test("openMember() with a scratch buffer yields views into it, and refuses one under a read", async () => {
  await withTempDir(async (dir) => {
    await mixedTree(`${dir}/src`);
    const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const repo = await openRepository(`${dir}/repo`);
    const manifest = await readManifest(repo, snapshot);
    const reader = await openArchive(repoPaths.archive(repo, snapshot));
    try {
      const scratch = new Uint8Array(MEMBER_SCRATCH_BYTES);
      let pieces = 0;
      for (const entry of manifest.entries) {
        if (entry.type !== "file") continue;
        const member = await openMember(reader, entry.offset!, entry.path, scratch);
        let bytes = 0;
        for await (const piece of member.pieces) {
          assert.equal(piece.bytes.buffer, scratch.buffer, `${entry.path}: a piece of its own`);
          bytes += piece.bytes.length;
          pieces++;
        }
        assert.equal(bytes, entry.sizeBytes);
      }
      assert.equal(pieces, 20 + 3);
      const file = manifest.entries.find((e) => e.type === "file")!;
      await assert.rejects(
        () => openMember(reader, file.offset!, file.path, new Uint8Array(4096)),
        RangeError,
      );
    } finally {
      reader.close();
    }
  });
});

Deno.test("a restore through one shared read buffer writes every file whole (one piece and several)", async () => {
  await withTempDir(async (dir) => {
    await mixedTree(`${dir}/src`);
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    for (const native of [true, false]) {
      const target = `${dir}/out-${native}`;
      await restoreSnapshot({ repo: `${dir}/repo`, snapshot: "latest", target, native });
      assert.deepEqual(await describeTree(target), await describeTree(`${dir}/src`));
      assert.deepEqual(
        await Deno.readFile(`${target}/d/big.bin`),
        await Deno.readFile(`${dir}/src/d/big.bin`),
      );
    }
  });
});
