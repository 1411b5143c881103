import assert from "node:assert/strict";
import { copyEntrySection, ParentLineCursor } from "./_parent_lines.ts";
import { ManifestFileWriter } from "./_manifest_file.ts";
import { withTempDir } from "../_testing.ts";
import { testId } from "../../core/backup/_test_data.ts";

const HEAD = {
  format: "lanfree-manifest",
  version: 2,
  id: testId(1),
  kind: "fs",
  source: "/src",
  parent: null,
  createdMs: 1,
  archiveBytes: 0,
} as const;

/** Entry lines of every shape the counter must tell apart, then plain ones past 1 MiB. */
function entryLines(): string[] {
  const data = { sizeBytes: 1, sha256: "a".repeat(64), data: testId(1) };
  const lines = [
    JSON.stringify({ type: "dir", path: "d", mode: 493, mtimeMs: 1, xattrs: { type: "file" } }),
    JSON.stringify({ path: "d/a", type: "file", mode: 420, mtimeMs: 1, ...data }),
    JSON.stringify({ type: "file", path: 'd/b "type":"dir"', mode: 420, mtimeMs: 1, ...data }),
    JSON.stringify({ type: "symlink", path: "d/c]", mode: 511, mtimeMs: 1, target: "]" }),
    // A duplicate key: JSON.parse (and so the check at commit) takes the last one, a file.
    JSON.stringify({ type: "dir", path: "d/d", mode: 420, mtimeMs: 1, ...data }).slice(0, -1) +
    ',"type":"file"}',
  ];
  // Bounded: each turn adds a line of about 150 bytes.
  for (let i = 0, chars = 0; chars < 1.5 * (1 << 20); i++) {
    const line = JSON.stringify({ type: "file", path: `d/f${i}`, mode: 420, mtimeMs: 1, ...data });
    lines.push(line);
    chars += line.length + 1;
  }
  return lines;
}

Deno.test("copyEntrySection copies a parent's entry lines as its file has them and counts its files exactly", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/parent.manifest.json`;
    const lines = entryLines();
    const writer = await ManifestFileWriter.create(path, HEAD);
    for (const line of lines) await writer.entry(line);
    await writer.deleted("gone]");
    await writer.finish({ storage: 0, network: 0 });
    const pieces: Uint8Array[] = [];
    const copied = await copyEntrySection(path, (bytes) => {
      pieces.push(bytes.slice());
      return Promise.resolve();
    });
    const files = lines.filter((line) => JSON.parse(line).type === "file").length;
    assert.deepEqual(copied, { entries: lines.length, files });
    assert.ok(pieces.length > 1, "the section spans more than one read");
    const decoder = new TextDecoder();
    const text = pieces.map((piece) => decoder.decode(piece, { stream: true })).join("");
    const file = (await Deno.readTextFile(path)).split("\n");
    assert.equal(text, file.slice(1, 1 + lines.length).join("\n") + "\n");
    // The lines a cursor hands over are the same entries.
    const cursor = await ParentLineCursor.open(path);
    const seen: string[] = [];
    assert.equal(
      await cursor.copy(0, lines.length, (l) => Promise.resolve(void seen.push(l))),
      undefined,
    );
    cursor.close();
    assert.deepEqual(seen, lines);
  });
});
