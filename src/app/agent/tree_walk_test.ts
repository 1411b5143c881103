import assert from "node:assert/strict";
import { SourceError } from "../errors.ts";
import { walkSource, walkTree } from "./tree_walk.ts";
import { pathToBytes } from "../../core/backup/path_rules.ts";
import { AT_FDCWD, close, O, openAt, setXattr } from "../../adapters/fs_native.ts";
import { withTempDir, writeFileWith } from "../_testing.ts";

Deno.test("walkTree() records symlinks without following them and lists parents first", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
    await Deno.mkdir(`${dir}/outside`);
    await writeFileWith(`${dir}/outside/secret`, "x");
    await writeFileWith(`${dir}/src/sub/-f\nnewline`, "abc", 0o600, 1_700_000_000);
    await Deno.symlink(`${dir}/outside`, `${dir}/src/link`);
    const { entries, skipped } = await walkTree(`${dir}/src`);
    assert.deepEqual(skipped, []);
    assert.deepEqual(entries.map((e) => [e.path, e.type]), [
      ["link", "symlink"],
      ["sub", "dir"],
      ["sub/-f\nnewline", "file"],
    ]);
    const file = entries[2]!;
    assert.equal(file.type === "file" && file.sizeBytes, 3);
    assert.equal(file.mode, 0o600);
    assert.equal(file.mtimeMs, 1_700_000_000_000);
    const link = entries[0]!;
    assert.equal(link.type === "symlink" && link.target, `${dir}/outside`);
  });
});

Deno.test("walkTree() skips a fifo and too-deep directories with a reason", async () => {
  await withTempDir(async (dir) => {
    const made = await new Deno.Command("mkfifo", { args: [`${dir}/pipe`] }).output();
    assert.ok(made.success, "mkfifo is available");
    await Deno.mkdir(`${dir}/a/b/c`, { recursive: true });
    const { entries, skipped } = await walkTree(dir, { depthMax: 2 });
    assert.deepEqual(entries.map((e) => e.path), ["a", "a/b"]);
    assert.deepEqual(skipped.map((s) => s.path), ["a/b/c", "pipe"]);
    assert.match(skipped.find((s) => s.path === "pipe")!.reason, /fifo/);
    assert.match(skipped.find((s) => s.path === "a/b/c")!.reason, /deeper than 2/);
  });
});

Deno.test("walkTree() fails clearly on a missing root, a file root and too many entries", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      walkTree(`${dir}/nope`),
      (e) => e instanceof SourceError && e.code === "not-found" && e.message.includes("nope"),
    );
    await writeFileWith(`${dir}/f`, "x");
    await assert.rejects(walkTree(`${dir}/f`), { code: "not-a-directory" });
    await writeFileWith(`${dir}/g`, "x");
    await assert.rejects(walkTree(dir, { entriesMax: 1 }), { code: "too-large" });
  });
});

Deno.test({
  name: "walkTree() reports an unreadable directory as skipped and goes on",
  ignore: Deno.uid() === 0, // root reads mode-000 directories anyway: nothing to observe
  fn: async () => {
    await withTempDir(async (dir) => {
      await Deno.mkdir(`${dir}/locked`);
      await writeFileWith(`${dir}/ok`, "x");
      await Deno.chmod(`${dir}/locked`, 0o000);
      try {
        const { entries, skipped } = await walkTree(dir);
        assert.deepEqual(entries.map((e) => e.path), ["locked", "ok"]);
        assert.equal(skipped[0]?.path, "locked");
      } finally {
        await Deno.chmod(`${dir}/locked`, 0o755);
      }
    });
  },
});

/** Makes `dir/bad\xffname` with a shell (Deno cannot name such a file). */
async function makeRawName(dir: string): Promise<void> {
  const made = await new Deno.Command("sh", {
    args: ["-c", `printf x > "$1/bad$(printf '\\377')name"`, "sh", dir],
  }).output();
  assert.ok(made.success);
}

Deno.test("walkTree() keeps a name that is not UTF-8, byte for byte (native layer)", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/ok`, "x");
    await makeRawName(dir);
    const { entries, skipped } = await walkTree(dir);
    assert.deepEqual(skipped, []);
    assert.deepEqual(entries.map((e) => e.path), ["bad\udcffname", "ok"]);
    assert.deepEqual([...pathToBytes(entries[0]!.path)], [
      ...new TextEncoder().encode("bad"),
      0xff,
      ...new TextEncoder().encode("name"),
    ]);
  });
});

Deno.test("walkTree() by path reports a name that is not UTF-8 with the true reason, not as vanished", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/ok`, "x");
    await makeRawName(dir);
    const { entries, skipped } = await walkTree(dir, { native: false });
    assert.deepEqual(entries.map((e) => e.path), ["ok"]);
    assert.equal(skipped.length, 1);
    assert.match(skipped[0]!.reason, /^its name is not valid UTF-8/);
    assert.doesNotMatch(skipped[0]!.reason, /vanished/);
  });
});

Deno.test("walkTree() lists entries in path order, each subtree after names that sort before a slash", async () => {
  await withTempDir(async (dir) => {
    for (const d of ["a", "a/x", "b"]) await Deno.mkdir(`${dir}/${d}`);
    for (const f of ["a-b", "a.c", "a/x/f", "a0", "b/g"]) {
      await Deno.writeTextFile(`${dir}/${f}`, "");
    }
    for (const native of [true, false]) {
      const paths = (await walkTree(dir, { native })).entries.map((e) => e.path);
      assert.deepEqual(paths, [...paths].sort(), `native: ${native}`);
      assert.deepEqual(paths, ["a", "a-b", "a.c", "a/x", "a/x/f", "a0", "b", "b/g"]);
    }
  });
});

Deno.test("walkTree() records a directory's extended attributes and leaves excluded paths out", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/d/repo`, { recursive: true });
    await Deno.writeTextFile(`${dir}/d/repo/inside`, "");
    const fd = openAt(AT_FDCWD, `${dir}/d`, O.RDONLY | O.DIRECTORY);
    setXattr(fd, "user.note", new TextEncoder().encode("hi"));
    close(fd);
    const { table } = await walkSource(dir, { exclude: ["d/repo"] });
    assert.deepEqual([table.path(0)], ["d"]);
    assert.equal(table.count, 1);
    assert.deepEqual(table.extras.get(0)?.xattrs, { "user.note": "aGk=" });
  });
});
