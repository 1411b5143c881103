import assert from "node:assert/strict";
import { runLocalBackup } from "../jobs/local_backup.ts";
import { restoreSnapshot } from "./restore.ts";
import { createdUnder, describeTree, withTempDir, writeFileWith } from "../_testing.ts";

const TEMPORARY = /\.lanfree-[0-9a-f]{16}\.partial$/;

/** A source with files at the top (where inotify sees every name) and in a directory. */
async function sourceTree(src: string): Promise<void> {
  await Deno.mkdir(`${src}/sub`, { recursive: true });
  for (let i = 0; i < 5; i++) {
    await writeFileWith(`${src}/f${i}`, `file ${i}\n`.repeat(i * 100), 0o640, 1_600_000_000 + i);
  }
  await writeFileWith(`${src}/sub/inner`, "inner", 0o600, 1_600_000_010);
}

/** An openat(O_TMPFILE) stand-in failing as a file system without unnamed files does. */
function refusingUnnamed(calls: { count: number }) {
  return () => {
    calls.count++;
    throw Object.assign(new Error('openat ".": EOPNOTSUPP'), { code: "EOPNOTSUPP" });
  };
}

Deno.test("a native restore never gives a file a temporary name: the only names it creates are the snapshot's (inotify)", async () => {
  await withTempDir(async (dir) => {
    await sourceTree(`${dir}/src`);
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    await Deno.mkdir(`${dir}/out`);
    const created = await createdUnder(
      `${dir}/out`,
      () => restoreSnapshot({ repo: `${dir}/repo`, snapshot: "latest", target: `${dir}/out` }),
    );
    assert.deepEqual(created.filter((path) => TEMPORARY.test(path)), [], created.join(", "));
    assert.ok(created.includes(`${dir}/out/f4`), created.join(", "));
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/src`));
  });
});

Deno.test("where the file system refuses O_TMPFILE, files are restored through locked temporary names, and it is asked once", async () => {
  await withTempDir(async (dir) => {
    await sourceTree(`${dir}/src`);
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    await Deno.mkdir(`${dir}/out`);
    const calls = { count: 0 };
    const created = await createdUnder(`${dir}/out`, () =>
      restoreSnapshot({
        repo: `${dir}/repo`,
        snapshot: "latest",
        target: `${dir}/out`,
        hooks: { openUnnamed: refusingUnnamed(calls) },
      }));
    assert.equal(calls.count, 1, `the refusal is remembered for the file system: ${calls.count}`);
    assert.ok(created.some((path) => TEMPORARY.test(path)), created.join(", "));
    assert.deepEqual(await describeTree(`${dir}/out`), await describeTree(`${dir}/src`));
  });
});

Deno.test("an error other than a refusal of O_TMPFILE fails that file as a target write error, naming it", async () => {
  await withTempDir(async (dir) => {
    await sourceTree(`${dir}/src`);
    await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const failed = await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: "latest",
      target: `${dir}/out`,
      hooks: {
        openUnnamed: () => {
          throw Object.assign(new Error('openat ".": ENOSPC'), { code: "ENOSPC" });
        },
      },
    }).then(() => undefined, (error) => error);
    assert.equal(failed?.code, "incomplete");
    const problems = failed.summary.problems as Array<{ path: string; side: string; code: string }>;
    assert.deepEqual(problems.map((p) => p.path).sort(), [
      "f0",
      "f1",
      "f2",
      "f3",
      "f4",
      "sub/inner",
    ]);
    assert.ok(problems.every((p) => p.side === "target" && p.code === "write-failed"));
    assert.deepEqual((await describeTree(`${dir}/out`)).map((e) => e.path), ["sub"]);
  });
});

for (const unnamed of [true, false]) {
  Deno.test(`an existing name is replaced as a rename replaces it, with overwrite and in a fresh target (O_TMPFILE ${unnamed})`, async () => {
    await withTempDir(async (dir) => {
      await sourceTree(`${dir}/src`);
      await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
      const openUnnamed = unnamed ? undefined : refusingUnnamed({ count: 0 });
      // With overwrite: a file and a directory tree where files go.
      await Deno.mkdir(`${dir}/kept/f1/deep`, { recursive: true });
      await Deno.writeTextFile(`${dir}/kept/f0`, "old contents");
      await Deno.writeTextFile(`${dir}/kept/f1/deep/x`, "in the way");
      await restoreSnapshot({
        repo: `${dir}/repo`,
        snapshot: "latest",
        target: `${dir}/kept`,
        overwrite: true,
        hooks: { openUnnamed },
      });
      assert.deepEqual(await describeTree(`${dir}/kept`), await describeTree(`${dir}/src`));
      // In a fresh target, a file that appears at a name mid-restore is replaced, as before.
      await restoreSnapshot({
        repo: `${dir}/repo`,
        snapshot: "latest",
        target: `${dir}/fresh`,
        hooks: {
          openUnnamed,
          beforeCreate: async (path) => {
            if (path === "f2") await Deno.writeTextFile(`${dir}/fresh/f2`, "someone else's");
          },
        },
      });
      assert.deepEqual(await describeTree(`${dir}/fresh`), await describeTree(`${dir}/src`));
    });
  });
}

Deno.test({
  name:
    "owner and mode come out as recorded where creation gives others: a setgid target's group, modes the umask cuts",
  ignore: Deno.uid() !== 0, // owners are restored as root only
  fn: async () => {
    await withTempDir(async (dir) => {
      await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
      await writeFileWith(`${dir}/src/group-write`, "664", 0o664);
      await writeFileWith(`${dir}/src/sub/private`, "600", 0o600);
      await writeFileWith(`${dir}/src/sub/exec`, "755", 0o755);
      await writeFileWith(`${dir}/src/other-write`, "666", 0o666);
      await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
      // A target whose files inherit group 4242 (setgid), and a plain one; under umask 027.
      await Deno.mkdir(`${dir}/setgid`);
      await Deno.chown(`${dir}/setgid`, 0, 4242);
      await Deno.chmod(`${dir}/setgid`, 0o2775);
      const umask = Deno.umask(0o027);
      try {
        for (const target of [`${dir}/setgid`, `${dir}/plain`]) {
          await restoreSnapshot({ repo: `${dir}/repo`, snapshot: "latest", target });
        }
      } finally {
        Deno.umask(umask);
      }
      for (const target of [`${dir}/setgid`, `${dir}/plain`]) {
        for (const name of ["group-write", "sub/private", "sub/exec", "other-write"]) {
          const [want, got] = await Promise.all([
            Deno.lstat(`${dir}/src/${name}`),
            Deno.lstat(`${target}/${name}`),
          ]);
          assert.deepEqual([got.uid, got.gid, got.mode! & 0o7777], [
            want.uid,
            want.gid,
            want.mode! & 0o7777,
          ], `${target}/${name}`);
        }
      }
    });
  },
});
