import assert from "node:assert/strict";
import { SourceError } from "../errors.ts";
import { walkTree } from "./tree_walk.ts";
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

Deno.test("walkTree() reports a name that is not UTF-8 with the true reason, not as vanished", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/ok`, "x");
    // Deno cannot name such a file: make it with a shell.
    const made = await new Deno.Command("sh", {
      args: ["-c", `printf x > "$1/bad$(printf '\\377')name"`, "sh", dir],
    }).output();
    assert.ok(made.success);
    const { entries, skipped } = await walkTree(dir);
    assert.deepEqual(entries.map((e) => e.path), ["ok"]);
    assert.equal(skipped.length, 1);
    assert.match(skipped[0]!.reason, /^its name is not valid UTF-8/);
    assert.doesNotMatch(skipped[0]!.reason, /vanished/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
