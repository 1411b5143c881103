import assert from "node:assert/strict";
import tar from "tar-stream";
import { makeSnapshotId } from "../../core/backup/manifest.ts";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { initRepository, repoPaths } from "./repository.ts";
import { restoreSnapshot } from "./restore.ts";
import { verifyRepository } from "./verify.ts";
import { type CheckedRecord, fileSha256 } from "./_checked_record.ts";
import { createdUnder, describeTree, withTempDir, writeFileWith } from "../_testing.ts";

async function sampleTree(root: string): Promise<void> {
  await Deno.mkdir(`${root}/docs/empty`, { recursive: true });
  await writeFileWith(`${root}/docs/report.md`, "# report\n", 0o640, 1_600_000_001);
  await writeFileWith(`${root}/-dash\nnl ü`, new Uint8Array([0, 255, 1]), 0o755, 1_600_000_002);
  await Deno.symlink("docs/report.md", `${root}/link`);
  await Deno.chmod(`${root}/docs/empty`, 0o700);
  await Deno.utime(`${root}/docs/empty`, 1_500_000_000, 1_500_000_000);
}

/** Restores, expecting an incomplete restore: each problem as [path, code, side]. */
async function restoreProblems(options: Parameters<typeof restoreSnapshot>[0]) {
  const failed = await restoreSnapshot(options).then(() => undefined, (error) => error);
  assert.equal(failed?.code, "incomplete");
  return (failed.summary.problems as Array<{ path: string; code: string; side: string }>).map((
    p,
  ) => [p.path, p.code, p.side]);
}

Deno.test("restoreSnapshot() recreates the tree with content, modes, mtimes and symlinks", async () => {
  await withTempDir(async (dir) => {
    await sampleTree(`${dir}/src`);
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const summary = await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: "latest",
      target: `${dir}/out`,
    });
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/src`));
    assert.deepEqual([summary.files, summary.dirs, summary.symlinks], [2, 2, 1]);
  });
});

Deno.test("restoreSnapshot() applies an incremental chain and restores subtrees alone", async () => {
  await withTempDir(async (dir) => {
    const src = `${dir}/src`;
    await sampleTree(src);
    await runLocalBackup({ source: src, repo: `${dir}/repo` });
    await writeFileWith(`${src}/docs/new.txt`, "new", 0o600, 1_600_000_100);
    await Deno.remove(`${src}/-dash\nnl ü`);
    const incremental = await runLocalBackup({
      source: src,
      repo: `${dir}/repo`,
      incremental: true,
    });
    assert.equal(incremental.files, 1);
    assert.equal(incremental.deleted, 1);
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: incremental.snapshot,
      target: `${dir}/all`,
    });
    assert.deepEqual(await describeTree(`${dir}/all`), await describeTree(src));
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: "latest",
      target: `${dir}/one`,
      path: "docs/report.md",
    });
    assert.deepEqual((await describeTree(`${dir}/one`)).map((e) => e.path), [
      "docs",
      "docs/report.md",
    ]);
    await assert.rejects(
      restoreSnapshot({
        repo: `${dir}/repo`,
        snapshot: "latest",
        target: `${dir}/x`,
        path: "nope",
      }),
      { code: "bad-plan", message: /"nope"/ },
    );
  });
});

Deno.test("restoreSnapshot() refuses a non-empty target unless told to overwrite", async () => {
  await withTempDir(async (dir) => {
    await sampleTree(`${dir}/src`);
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    await Deno.mkdir(`${dir}/out`);
    await Deno.writeTextFile(`${dir}/out/keep`, "mine");
    await assert.rejects(
      restoreSnapshot({ repo: `${dir}/repo`, snapshot: "latest", target: `${dir}/out` }),
      {
        code: "target-not-empty",
        message: new RegExp(`${dir}/out`),
      },
    );
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: "latest",
      target: `${dir}/out`,
      overwrite: true,
    });
    assert.equal(await Deno.readTextFile(`${dir}/out/keep`), "mine");
    assert.equal(await Deno.readTextFile(`${dir}/out/docs/report.md`), "# report\n");
  });
});

Deno.test("restoreSnapshot() never writes through a symlink already in the target", async () => {
  await withTempDir(async (dir) => {
    await sampleTree(`${dir}/src`);
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    await Deno.mkdir(`${dir}/outside`);
    await Deno.mkdir(`${dir}/out`);
    await Deno.symlink(`${dir}/outside`, `${dir}/out/docs`);
    await Deno.symlink(`${dir}/outside/victim`, `${dir}/out/-dash\nnl ü`);
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: "latest",
      target: `${dir}/out`,
      overwrite: true,
    });
    assert.deepEqual(await describeTree(`${dir}/outside`), []);
    assert.ok((await Deno.lstat(`${dir}/out/docs`)).isDirectory);
  });
});

/** Writes a snapshot by hand: a crafted archive and a manifest (valid or not). */
async function craftedSnapshot(
  repoDir: string,
  members: Array<[tar.Header["type"], string, string]>,
  manifest: (id: string) => unknown,
) {
  const repo = await initRepository(repoDir);
  const id = makeSnapshotId(Date.UTC(2024, 0, 1), "0000abcd");
  const pack = tar.pack();
  for (const [type, name, body] of members) {
    if (type === "file") pack.entry({ name, type }, body);
    else pack.entry(type === "symlink" ? { name, type, linkname: body } : { name, type });
  }
  pack.finalize();
  const chunks: Uint8Array[] = [];
  for await (const chunk of pack as AsyncIterable<Uint8Array>) chunks.push(chunk);
  const archive = await Deno.open(repoPaths.archive(repo, id), { write: true, create: true });
  for (const chunk of chunks) await archive.write(chunk);
  archive.close();
  await Deno.writeTextFile(repoPaths.manifest(repo, id), JSON.stringify(manifest(id)));
  return id;
}

function manifestOf(id: string, entries: unknown[]) {
  return {
    format: "lanfree-manifest",
    version: 1,
    id,
    kind: "fs",
    source: "/evil",
    parent: null,
    createdMs: 0,
    archiveBytes: 0,
    channelBytes: { storage: 0, network: 0 },
    entries,
    deleted: [],
  };
}

const EVIL_SHA = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"; // sha256("foo")

Deno.test("tar-slip manifests (.., absolute, file through a symlink) are refused on restore", async () => {
  const cases: Array<[string, unknown[]]> = [
    ["dot-dot", [{
      type: "file",
      path: "../evil",
      mode: 0o644,
      mtimeMs: 0,
      sizeBytes: 3,
      sha256: EVIL_SHA,
      data: "",
    }]],
    ["absolute", [{
      type: "file",
      path: "/tmp/evil",
      mode: 0o644,
      mtimeMs: 0,
      sizeBytes: 3,
      sha256: EVIL_SHA,
      data: "",
    }]],
    ["through a symlink", [
      { type: "symlink", path: "l", mode: 0o777, mtimeMs: 0, target: "/tmp" },
      {
        type: "file",
        path: "l/evil",
        mode: 0o644,
        mtimeMs: 0,
        sizeBytes: 3,
        sha256: EVIL_SHA,
        data: "",
      },
    ]],
  ];
  for (const [label, entries] of cases) {
    await withTempDir(async (dir) => {
      await craftedSnapshot(
        `${dir}/repo`,
        [["symlink", "l", "/tmp"], ["file", "l/evil", "foo"], ["file", "../evil", "foo"]],
        (id) =>
          manifestOf(
            id,
            entries.map((e) => ({
              ...(e as object),
              ...("data" in (e as object) ? { data: id } : {}),
            })),
          ),
      );
      await assert.rejects(
        restoreSnapshot({ repo: `${dir}/repo`, snapshot: "latest", target: `${dir}/out/in` }),
        { code: "corrupt" },
        label,
      );
      assert.deepEqual(
        (await describeTree(dir)).map((e) => e.path).filter((p) => !p.startsWith("repo")),
        [],
        label,
      );
    });
  }
});

Deno.test("crafted archive members outside the manifest are never written", async () => {
  await withTempDir(async (dir) => {
    const members: Array<[tar.Header["type"], string, string]> = [
      ["file", "../evil", "foo"],
      ["file", "/abs-evil", "foo"],
      ["symlink", "l", dir],
      ["file", "l/evil", "foo"],
      ["file", "ok", "foo"],
    ];
    await craftedSnapshot(
      `${dir}/repo`,
      members,
      (id) =>
        manifestOf(id, [{
          type: "file",
          path: "ok",
          mode: 0o644,
          mtimeMs: 0,
          sizeBytes: 3,
          sha256: EVIL_SHA,
          data: id,
        }]),
    );
    await restoreSnapshot({ repo: `${dir}/repo`, snapshot: "latest", target: `${dir}/out/in` });
    const paths = (await describeTree(dir)).map((e) => e.path).filter((p) => !p.startsWith("repo"));
    assert.deepEqual(paths, ["out", "out/in", "out/in/ok"]);
  });
});

Deno.test("a corrupted archive byte is reported naming the file, by restore and by verify", async () => {
  await withTempDir(async (dir) => {
    await sampleTree(`${dir}/src`);
    const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    assert.equal((await verifyRepository(`${dir}/repo`)).ok, true);
    const archive = `${dir}/repo/snapshots/${snapshot}.tar`;
    const bytes = await Deno.readFile(archive);
    const at = new TextDecoder("latin1").decode(bytes).indexOf("# report");
    assert.ok(at > 0);
    bytes[at] = "X".charCodeAt(0);
    await Deno.writeFile(archive, bytes);
    assert.deepEqual(
      await restoreProblems({ repo: `${dir}/repo`, snapshot, target: `${dir}/out` }),
      [["docs/report.md", "hash-mismatch", "repository"]],
    );
    await assert.rejects(Deno.lstat(`${dir}/out/docs/report.md`), Deno.errors.NotFound);
    // Every intact file was restored.
    assert.deepEqual(await Deno.readFile(`${dir}/out/-dash\nnl ü`), new Uint8Array([0, 255, 1]));
    const report = await verifyRepository(`${dir}/repo`, snapshot);
    assert.equal(report.ok, false);
    assert.deepEqual(report.problems.map((p) => [p.path, p.code]), [[
      "docs/report.md",
      "hash-mismatch",
    ]]);
  });
});

for (const native of [true, false]) {
  Deno.test(`an archive cut inside a file's bytes is the repository's fault, not the target's (native ${native})`, async () => {
    await withTempDir(async (dir) => {
      await Deno.mkdir(`${dir}/src`);
      await writeFileWith(`${dir}/src/a.txt`, "intact", 0o644, 1_600_000_001);
      await writeFileWith(
        `${dir}/src/z.bin`,
        new Uint8Array(200_000).fill(7),
        0o644,
        1_600_000_002,
      );
      const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
      const archive = `${dir}/repo/snapshots/${snapshot}.tar`;
      const header = new TextDecoder("latin1").decode(await Deno.readFile(archive)).indexOf(
        "z.bin",
      );
      assert.ok(header > 0);
      await Deno.truncate(archive, header + 512 + 100_000);
      assert.deepEqual(
        await restoreProblems({ repo: `${dir}/repo`, snapshot, target: `${dir}/out`, native }),
        [["z.bin", "bad-archive", "repository"]],
      );
      assert.equal(await Deno.readTextFile(`${dir}/out/a.txt`), "intact");
      const left = [];
      for await (const entry of Deno.readDir(`${dir}/out`)) left.push(entry.name);
      assert.deepEqual(left, ["a.txt"]); // no z.bin, no temporary file
    });
  });
}

Deno.test("verify reports a missing or truncated archive naming the snapshot", async () => {
  await withTempDir(async (dir) => {
    await sampleTree(`${dir}/src`);
    const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const archive = `${dir}/repo/snapshots/${snapshot}.tar`;
    await Deno.truncate(archive, 700);
    const truncated = await verifyRepository(`${dir}/repo`);
    assert.equal(truncated.ok, false);
    assert.ok(truncated.problems.some((p) => p.message.includes(snapshot)));
    await Deno.remove(archive);
    const missing = await verifyRepository(`${dir}/repo`);
    assert.equal(missing.problems[0]?.code, "bad-archive");
    assert.match(missing.problems[0]!.message, new RegExp(snapshot));
  });
});

/** A tree and a restore whose hook swaps `out/sub` for a symlink to `outside` before `sub/a.txt`. */
async function restoreWithSwap(dir: string, native: boolean) {
  await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
  await writeFileWith(`${dir}/src/sub/a.txt`, "AAA");
  await writeFileWith(`${dir}/src/sub/b.txt`, "BBB");
  await writeFileWith(`${dir}/src/top.txt`, "TOP");
  await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
  await Deno.mkdir(`${dir}/outside`, { recursive: true });
  let swapped = false;
  const failed = await restoreSnapshot({
    repo: `${dir}/repo`,
    snapshot: "latest",
    target: `${dir}/out`,
    native,
    hooks: {
      beforeCreate: async (path) => {
        if (path !== "sub/a.txt" || swapped) return;
        swapped = true; // after the parent check, before the file is created
        await Deno.rename(`${dir}/out/sub`, `${dir}/sub-moved`);
        await Deno.symlink(`${dir}/outside`, `${dir}/out/sub`);
      },
    },
  }).then(() => undefined, (error) => error);
  assert.ok(swapped);
  return failed;
}

Deno.test("a parent swapped for a symlink mid-restore is never followed: writes stay in the held directory, and the restore names it", async () => {
  await withTempDir(async (dir) => {
    const failed = await restoreWithSwap(dir, true);
    assert.deepEqual(await describeTree(`${dir}/outside`), [], "nothing written outside");
    // Written relative to the held descriptor: into the directory itself, wherever it went.
    assert.equal(await Deno.readTextFile(`${dir}/sub-moved/a.txt`), "AAA");
    assert.equal(await Deno.readTextFile(`${dir}/sub-moved/b.txt`), "BBB");
    assert.equal(failed?.code, "incomplete");
    assert.deepEqual(failed.summary.problems.map((p: { path: string }) => p.path), ["sub"]);
    assert.match(failed.message, /directory "sub" was moved or replaced during the restore/);
    assert.equal(await Deno.readTextFile(`${dir}/out/top.txt`), "TOP");
  });
});

Deno.test("without FFI a parent swapped for a symlink gets nothing written outside, and each file is named", async () => {
  await withTempDir(async (dir) => {
    const failed = await restoreWithSwap(dir, false);
    assert.deepEqual(await describeTree(`${dir}/outside`), [], "nothing written outside");
    assert.equal(failed?.code, "incomplete");
    const paths = failed.summary.problems.map((p: { path: string }) => p.path);
    assert.ok(paths.includes("sub/a.txt"), paths.join(", "));
    assert.ok(paths.includes("sub/b.txt"), paths.join(", "));
    assert.equal(await Deno.readTextFile(`${dir}/out/top.txt`), "TOP");
  });
});

Deno.test("a parent swapped for a symlink after its check: not even a temporary file is created through it (inotify)", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/outside`);
    const created = await createdUnder(`${dir}/outside`, () => restoreWithSwap(dir, true));
    assert.deepEqual(created, [], "something was created through the swapped-in symlink");
  });
});

Deno.test("setuid, setgid and sticky bits are stripped on restore unless permissions are preserved (as GNU tar)", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src/shared`, { recursive: true });
    await Deno.mkdir(`${dir}/src/tmpdir`);
    await writeFileWith(`${dir}/src/tool`, "#!/bin/sh\n", 0o4755);
    await writeFileWith(`${dir}/src/grouptool`, "#!/bin/sh\n", 0o2755);
    await Deno.chmod(`${dir}/src/shared`, 0o2775);
    await Deno.chmod(`${dir}/src/tmpdir`, 0o1777);
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const modes = async (root: string) =>
      Object.fromEntries(
        await Promise.all(
          ["tool", "grouptool", "shared", "tmpdir"].map(async (name) => [
            name,
            ((await Deno.lstat(`${root}/${name}`)).mode! & 0o7777).toString(8),
          ]),
        ),
      );
    await restoreSnapshot({ repo: `${dir}/repo`, snapshot: "latest", target: `${dir}/plain` });
    assert.deepEqual(await modes(`${dir}/plain`), {
      tool: "755",
      grouptool: "755",
      shared: "775",
      tmpdir: "777",
    });
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: "latest",
      target: `${dir}/kept`,
      preservePermissions: true,
    });
    assert.deepEqual(await modes(`${dir}/kept`), await modes(`${dir}/src`));
  });
});

const runningAsRoot = Deno.uid() === 0;

Deno.test({
  name: "owners are recorded (ids and names) and restored as root, by name when it exists",
  ignore: !runningAsRoot, // chown to another user needs root; without root tar does not try either
  fn: async () => {
    await withTempDir(async (dir) => {
      await Deno.mkdir(`${dir}/src/d`, { recursive: true });
      await writeFileWith(`${dir}/src/d/numeric`, "n");
      await writeFileWith(`${dir}/src/rooted`, "r");
      await Deno.symlink("d/numeric", `${dir}/src/link`);
      await Deno.chown(`${dir}/src/d/numeric`, 12345, 54321);
      await Deno.chown(`${dir}/src/d`, 4242, 4343);
      const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
      const manifest = JSON.parse(
        await Deno.readTextFile(`${dir}/repo/snapshots/${snapshot}.manifest.json`),
      );
      type Owned = { path: string; uid?: number; gid?: number; user?: string; group?: string };
      const byPath = new Map<string, Owned>(manifest.entries.map((e: Owned) => [e.path, e]));
      assert.deepEqual(
        [byPath.get("d/numeric")!].map((e) => [e.uid, e.gid, e.user]),
        [[12345, 54321, undefined]],
      );
      assert.deepEqual([byPath.get("rooted")!].map((e) => [e.uid, e.user, e.group]), [[
        0,
        "root",
        "root",
      ]]);
      await restoreSnapshot({ repo: `${dir}/repo`, snapshot, target: `${dir}/out` });
      const owner = async (p: string) => {
        const info = await Deno.lstat(`${dir}/out/${p}`);
        return [info.uid, info.gid];
      };
      assert.deepEqual(await owner("d/numeric"), [12345, 54321]);
      assert.deepEqual(await owner("d"), [4242, 4343]);
      assert.deepEqual(await owner("rooted"), [0, 0]);
    });
  },
});

Deno.test({
  name:
    "a full target disk is a write error of the target naming the file; the other files are restored and no partial file stays",
  ignore: !runningAsRoot, // mounts a 1 MiB tmpfs as the target
  fn: async () => {
    await withTempDir(async (dir) => {
      await Deno.mkdir(`${dir}/src`);
      await writeFileWith(`${dir}/src/big`, new Uint8Array(3 << 20).fill(7));
      await writeFileWith(`${dir}/src/small`, "fits");
      await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
      await Deno.mkdir(`${dir}/full`);
      const mount = await new Deno.Command("mount", {
        args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", `${dir}/full`],
        stderr: "piped",
      }).output();
      if (!mount.success) {
        console.log("skipped: cannot mount a tmpfs here (no CAP_SYS_ADMIN)");
        return;
      }
      try {
        const failed = await restoreSnapshot({
          repo: `${dir}/repo`,
          snapshot: "latest",
          target: `${dir}/full`,
        }).then(() => undefined, (error) => error);
        assert.equal(failed?.code, "incomplete");
        assert.deepEqual(
          failed.summary.problems.map((p: { path: string; side: string; code: string }) => [
            p.path,
            p.side,
            p.code,
          ]),
          [["big", "target", "write-failed"]],
        );
        assert.match(failed.summary.problems[0].message, /ENOSPC/);
        assert.equal(await Deno.readTextFile(`${dir}/full/small`), "fits");
        assert.deepEqual((await describeTree(`${dir}/full`)).map((e) => e.path), ["small"]);
      } finally {
        await new Deno.Command("umount", { args: [`${dir}/full`] }).output();
      }
    });
  },
});

Deno.test("a version-1 repository (no owners, no offsets) is still restored and verified", async () => {
  await withTempDir(async (dir) => {
    const fixture = new URL("../../../fixtures/repo-v1", import.meta.url).pathname;
    await new Deno.Command("cp", { args: ["-r", fixture, `${dir}/repo`] }).output();
    assert.equal((await verifyRepository(`${dir}/repo`)).ok, true);
    await restoreSnapshot({ repo: `${dir}/repo`, snapshot: "latest", target: `${dir}/out` });
    const tree = await describeTree(`${dir}/out`);
    assert.deepEqual(tree.map((e) => [e.path, e.type]), [
      ["docs", "dir"],
      ["docs/report.md", "file"],
      ["hello.txt", "file"],
      ["link", "symlink"],
      ["new.txt", "file"],
    ]);
    assert.equal(await Deno.readTextFile(`${dir}/out/new.txt`), "added in the incremental\n");
    assert.equal(await Deno.readTextFile(`${dir}/out/hello.txt`), "hello from v1\n");
    assert.equal((await Deno.lstat(`${dir}/out/hello.txt`)).mode! & 0o777, 0o640);
  });
});

Deno.test("hard links are stored as tar link members and restored as links; alone under --path, as a file", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
    await writeFileWith(`${dir}/src/a`, "shared bytes");
    await Deno.link(`${dir}/src/a`, `${dir}/src/b`);
    await Deno.link(`${dir}/src/a`, `${dir}/src/sub/c`);
    await writeFileWith(`${dir}/src/d`, "alone");
    const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const archive = `${dir}/repo/snapshots/${snapshot}.tar`;
    const listed = await new Deno.Command("tar", { args: ["-tvf", archive] }).output();
    const lines = new TextDecoder().decode(listed.stdout);
    assert.match(lines, /^h.* b link to a$/m);
    assert.match(lines, /^h.* sub\/c link to a$/m);
    await Deno.mkdir(`${dir}/gnu`);
    await new Deno.Command("tar", { args: ["-xf", archive, "-C", `${dir}/gnu`] }).output();
    assert.equal((await Deno.lstat(`${dir}/gnu/sub/c`)).nlink, 3);
    await restoreSnapshot({ repo: `${dir}/repo`, snapshot, target: `${dir}/out` });
    const ino = async (p: string) => (await Deno.lstat(`${dir}/out/${p}`)).ino;
    assert.equal(await ino("b"), await ino("a"));
    assert.equal(await ino("sub/c"), await ino("a"));
    assert.notEqual(await ino("d"), await ino("a"));
    assert.equal(await Deno.readTextFile(`${dir}/out/sub/c`), "shared bytes");
    await restoreSnapshot({ repo: `${dir}/repo`, snapshot, target: `${dir}/one`, path: "sub/c" });
    assert.equal(await Deno.readTextFile(`${dir}/one/sub/c`), "shared bytes");
    assert.equal((await verifyRepository(`${dir}/repo`)).ok, true);
    const again = await runLocalBackup({
      source: `${dir}/src`,
      repo: `${dir}/repo`,
      incremental: true,
    });
    assert.equal(again.files, 0, "an unchanged link group is not archived again");
  });
});

Deno.test("--path reads only the member it restores, at the offset the manifest keeps", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src/docs`, { recursive: true });
    await writeFileWith(`${dir}/src/big.bin`, new Uint8Array(16 << 20).fill(1));
    await writeFileWith(`${dir}/src/docs/small.txt`, "the one file wanted");
    await writeFileWith(`${dir}/src/zzz.bin`, new Uint8Array(4 << 20).fill(2));
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    let bytesRead = 0;
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: "latest",
      target: `${dir}/out`,
      path: "docs/small.txt",
      openArchive: async (path) => {
        const file = await Deno.open(path);
        return {
          read: async (into, position) => {
            await file.seek(position, Deno.SeekMode.Start);
            const n = (await file.read(into)) ?? 0;
            bytesRead += n;
            return n;
          },
          close: () => file.close(),
        };
      },
    });
    assert.equal(await Deno.readTextFile(`${dir}/out/docs/small.txt`), "the one file wanted");
    assert.ok(bytesRead > 0, "the archive was read through the given reader");
    assert.ok(bytesRead < 64 << 10, `read ${bytesRead} bytes of a 20 MiB archive`);
  });
});

for (const native of [true, false]) {
  Deno.test(`a directory gets its time back though a sibling sorts between it and its entries (native ${native})`, async () => {
    await withTempDir(async (dir) => {
      // Path order is not tree order: "a" < "a-b" < "a/c" ('-' sorts before '/').
      await Deno.mkdir(`${dir}/src/a`, { recursive: true });
      await writeFileWith(`${dir}/src/a-b`, "sibling", 0o644, 1_600_000_001);
      await writeFileWith(`${dir}/src/a/c`, "inside", 0o644, 1_600_000_002);
      await Deno.utime(`${dir}/src/a`, 1_500_000_000, 1_500_000_000);
      const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
      await restoreSnapshot({ repo: `${dir}/repo`, snapshot, target: `${dir}/out`, native });
      assert.equal((await Deno.stat(`${dir}/out/a`)).mtime?.getTime(), 1_500_000_000_000);
      assert.equal(await Deno.readTextFile(`${dir}/out/a/c`), "inside");
    });
  });
}

/** A forged checked record: a record, its text as written, or undefined to leave it as it is. */
type Forge = (matching: CheckedRecord) => CheckedRecord | string | undefined;

/**
 * Rewrites a snapshot's manifest with `edit`, and its checked record with what `forgeRecord`
 * makes of the record naming the new file (undefined leaves the record naming the old one).
 */
async function tamperManifest(
  repo: { path: string },
  id: string,
  edit: (text: string) => string,
  forgeRecord: Forge,
): Promise<void> {
  const manifest = repoPaths.manifest(repo, id);
  const before = await Deno.readTextFile(manifest);
  const after = edit(before);
  assert.notEqual(after, before, "the edit changes the manifest");
  await Deno.writeTextFile(manifest, after);
  const recordPath = repoPaths.checked(repo, id);
  const record = JSON.parse(await Deno.readTextFile(recordPath)) as CheckedRecord;
  const forged = forgeRecord({
    ...record,
    manifest: { sha256: await fileSha256(manifest), bytes: (await Deno.stat(manifest)).size },
  });
  if (forged === undefined) return;
  await Deno.writeTextFile(
    recordPath,
    typeof forged === "string" ? forged : JSON.stringify(forged),
  );
}

/** The sample tree's last entry in path order ("link") made invalid: a type no check allows. */
const breakLastEntry = (text: string) => text.replace('"type":"symlink"', '"type":"socket"');

Deno.test("a restore trusts a manifest that still matches its checked record: no checking pass reads it first", async () => {
  await withTempDir(async (dir) => {
    await sampleTree(`${dir}/src`);
    const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const repo = { path: `${dir}/repo` };
    // A forged record vouches for a broken manifest: only the restore pass's own check of each
    // entry it reads finds the break, after the entries before it in path order are restored.
    // A record written before it counted files without offsets vouches as well (it is read).
    await tamperManifest(repo, snapshot, breakLastEntry, (record) => record);
    const older = JSON.parse(await Deno.readTextFile(repoPaths.checked(repo, snapshot)));
    delete older.filesWithoutOffset;
    const records = [
      await Deno.readTextFile(repoPaths.checked(repo, snapshot)),
      JSON.stringify(older),
    ];
    for (
      const [round, path] of [[0, undefined], [0, "docs"], [1, undefined], [1, "docs"]] as const
    ) {
      await Deno.writeTextFile(repoPaths.checked(repo, snapshot), records[round]!);
      const target = `${dir}/out-${round}-${path ?? "all"}`;
      await assert.rejects(
        restoreSnapshot({ repo: repo.path, snapshot, target, path }),
        /corrupt|type: expected file, dir or symlink/,
      );
      assert.equal(await Deno.readTextFile(`${target}/docs/report.md`), "# report\n");
    }
  });
});

Deno.test("a tampered manifest without a matching checked record is refused before anything is written", async () => {
  await withTempDir(async (dir) => {
    await sampleTree(`${dir}/src`);
    const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const repo = { path: `${dir}/repo` };
    const records: Array<[string, Forge]> = [
      ["stale", () => undefined],
      ["wrong hash", (r) => ({ ...r, manifest: { ...r.manifest, sha256: "0".repeat(64) } })],
      [
        "cut off (the last round: it is read as a record no more)",
        (r) => JSON.stringify(r).slice(0, 40),
      ],
    ];
    for (const [name, forge] of records) {
      await tamperManifest(
        repo,
        snapshot,
        (t) => t.replace(/"type":"symlink"/, '"type":"fifo"'),
        forge,
      );
      await Deno.mkdir(`${dir}/out`, { recursive: true });
      for (const path of [undefined, "docs"]) {
        await assert.rejects(
          restoreSnapshot({ repo: repo.path, snapshot, target: `${dir}/out`, path }),
          /type: expected file, dir or symlink/,
          name,
        );
        assert.deepEqual([...Deno.readDirSync(`${dir}/out`)], [], `${name}: nothing written`);
      }
      // The next round tampers again (its edit needs a symlink line).
      await Deno.writeTextFile(
        repoPaths.manifest(repo, snapshot),
        (await Deno.readTextFile(repoPaths.manifest(repo, snapshot))).replace(
          '"fifo"',
          '"symlink"',
        ),
      );
    }
  });
});

Deno.test("a manifest whose record counts files without offsets is restored in phases, by name", async () => {
  await withTempDir(async (dir) => {
    await sampleTree(`${dir}/src`);
    const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const repo = { path: `${dir}/repo` };
    const record = JSON.parse(await Deno.readTextFile(repoPaths.checked(repo, snapshot)));
    assert.equal(record.filesWithoutOffset, 0, "a fresh backup places every member");
    // As an incremental over a version-1 parent: a file kept without its member's offset.
    await tamperManifest(
      repo,
      snapshot,
      (text) => text.replace(/("path":"docs\/report.md".*?),"offset":\d+/, "$1"),
      (r) => ({ ...r, filesWithoutOffset: 1 }),
    );
    await restoreSnapshot({ repo: repo.path, snapshot, target: `${dir}/out` });
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/src`));
  });
});
