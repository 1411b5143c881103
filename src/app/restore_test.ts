import assert from "node:assert/strict";
import tar from "tar-stream";
import { makeSnapshotId } from "../core/backup/manifest.ts";
import { runLocalBackup } from "./local_backup.ts";
import { initRepository, repoPaths } from "./repository.ts";
import { restoreSnapshot } from "./restore.ts";
import { verifyRepository } from "./verify.ts";
import { describeTree, withTempDir, writeFileWith } from "./_testing.ts";

async function sampleTree(root: string): Promise<void> {
  await Deno.mkdir(`${root}/docs/empty`, { recursive: true });
  await writeFileWith(`${root}/docs/report.md`, "# report\n", 0o640, 1_600_000_001);
  await writeFileWith(`${root}/-dash\nnl ü`, new Uint8Array([0, 255, 1]), 0o755, 1_600_000_002);
  await Deno.symlink("docs/report.md", `${root}/link`);
  await Deno.chmod(`${root}/docs/empty`, 0o700);
  await Deno.utime(`${root}/docs/empty`, 1_500_000_000, 1_500_000_000);
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
    await assert.rejects(restoreSnapshot({ repo: `${dir}/repo`, snapshot, target: `${dir}/out` }), {
      code: "hash-mismatch",
      message: /"docs\/report\.md"/,
    });
    await assert.rejects(Deno.lstat(`${dir}/out/docs/report.md`), Deno.errors.NotFound);
    const report = await verifyRepository(`${dir}/repo`, snapshot);
    assert.equal(report.ok, false);
    assert.deepEqual(report.problems.map((p) => [p.path, p.code]), [[
      "docs/report.md",
      "hash-mismatch",
    ]]);
  });
});

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
