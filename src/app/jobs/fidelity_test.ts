/**
 * What the native file layer keeps that the path-based one could not: names that are not
 * UTF-8, byte for byte; sparse files, sparse; extended attributes; and a rerun of a killed
 * restore that removes the temporaries it can prove stale. Each test runs a real backup and a
 * real restore of real files, and where GNU tar is the reference, GNU tar extracts the archive.
 */

import assert from "node:assert/strict";
import { runLocalBackup } from "./local_backup.ts";
import { restoreSnapshot } from "../repository/restore.ts";
import { withTempDir } from "../_testing.ts";
import {
  AT_FDCWD,
  close,
  getXattr,
  listXattrs,
  O,
  openAt,
  pwriteAll,
  readDirNames,
  seekData,
  seekHole,
  setXattr,
  statAt,
  statFd,
  symlinkAt,
} from "../../adapters/fs_native.ts";

const encoder = new TextEncoder();
const RAW = new Uint8Array([0x62, 0x61, 0x64, 0xff, 0xfe, 0x2d, 0x6e, 0x61, 0x6d, 0x65]); // bad\xff\xfe-name

function openDir(path: string): number {
  return openAt(AT_FDCWD, path, O.RDONLY | O.DIRECTORY);
}

/** Names in `dir` as arrays of bytes, sorted. */
function rawNames(dir: string): number[][] {
  const fd = openDir(dir);
  try {
    return readDirNames(fd).map((n) => [...n]).sort((a, b) => String(a).localeCompare(String(b)));
  } finally {
    close(fd);
  }
}

async function gnuTarExtract(archive: string, into: string, ...flags: string[]): Promise<void> {
  await Deno.mkdir(into, { recursive: true });
  const out = await new Deno.Command("tar", { args: [...flags, "-xf", archive, "-C", into] })
    .output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
}

Deno.test("a name that is not UTF-8 (\\xff) round-trips byte-exact: backup, restore and GNU tar", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    const src = openDir(`${dir}/src`);
    const file = openAt(src, RAW, O.WRONLY | O.CREAT | O.EXCL, 0o640);
    pwriteAll(file, encoder.encode("raw bytes"), 0);
    close(file);
    symlinkAt(RAW, src, new Uint8Array([0x6c, 0xe9])); // "l\xe9" -> bad\xff\xfe-name
    close(src);
    const summary = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    assert.deepEqual(summary.skippedEntries, []);
    assert.equal(summary.files, 1);
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: summary.snapshot,
      target: `${dir}/out`,
    });
    assert.deepEqual(rawNames(`${dir}/out`), rawNames(`${dir}/src`));
    const out = openDir(`${dir}/out`);
    try {
      assert.equal(statAt(out, RAW).size, 9);
      assert.equal(statAt(out, RAW).mode, 0o640);
    } finally {
      close(out);
    }
    await gnuTarExtract(`${dir}/repo/snapshots/${summary.snapshot}.tar`, `${dir}/tar`);
    assert.deepEqual(rawNames(`${dir}/tar`), rawNames(`${dir}/src`));
  });
});

const GIB = 1024 ** 3;

/** The data runs of a file (SEEK_DATA/SEEK_HOLE). */
function dataRuns(path: string): Array<[number, number]> {
  const fd = openAt(AT_FDCWD, path, O.RDONLY);
  try {
    const size = statFd(fd).size;
    const runs: Array<[number, number]> = [];
    for (let at = 0; at < size;) {
      const data = seekData(fd, at);
      if (data === null) break;
      const hole = seekHole(fd, data);
      runs.push([data, hole - data]);
      at = hole;
    }
    return runs;
  } finally {
    close(fd);
  }
}

Deno.test("a 10 GiB sparse file with a few data blocks takes under 1 MiB in the repository, restores with the same allocation, and GNU tar extracts it identically", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    const path = `${dir}/src/disk.img`;
    const fd = openAt(AT_FDCWD, path, O.WRONLY | O.CREAT | O.EXCL, 0o600);
    const block = crypto.getRandomValues(new Uint8Array(4096));
    for (const offset of [0, 3 * GIB, 7 * GIB + 8192]) pwriteAll(fd, block, offset);
    await Deno.truncate(path, 10 * GIB);
    close(fd);
    const source = statAt(AT_FDCWD, path);
    assert.ok(
      source.allocatedBytes < 1 << 20,
      `the file system keeps holes (${source.allocatedBytes})`,
    );
    const summary = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    const archive = `${dir}/repo/snapshots/${summary.snapshot}.tar`;
    assert.ok((await Deno.stat(archive)).size < 1 << 20, "archive under 1 MiB");
    let repositoryBytes = 0;
    for await (const e of Deno.readDir(`${dir}/repo/snapshots`)) {
      repositoryBytes += (await Deno.stat(`${dir}/repo/snapshots/${e.name}`)).size;
    }
    assert.ok(repositoryBytes < 1 << 20, `repository holds ${repositoryBytes} bytes`);
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: summary.snapshot,
      target: `${dir}/out`,
    });
    const restored = statAt(AT_FDCWD, `${dir}/out/disk.img`);
    assert.equal(restored.size, 10 * GIB);
    assert.equal(restored.allocatedBytes, source.allocatedBytes);
    assert.deepEqual(dataRuns(`${dir}/out/disk.img`), dataRuns(path));
    const back = await Deno.open(`${dir}/out/disk.img`);
    const read = new Uint8Array(4096);
    await back.seek(7 * GIB + 8192, Deno.SeekMode.Start);
    await back.read(read);
    back.close();
    assert.deepEqual(read, block);
    await gnuTarExtract(archive, `${dir}/tar`);
    const byTar = statAt(AT_FDCWD, `${dir}/tar/disk.img`);
    assert.equal(byTar.size, 10 * GIB);
    assert.deepEqual(dataRuns(`${dir}/tar/disk.img`), dataRuns(path));
  });
});

Deno.test("extended attributes are recorded (SCHILY.xattr, as GNU tar) and user ones restored", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src/d`, { recursive: true });
    await Deno.writeTextFile(`${dir}/src/d/f`, "with attributes");
    const value = new Uint8Array([0, 1, 2, 255, 10]);
    for (const path of [`${dir}/src/d`, `${dir}/src/d/f`]) {
      const fd = openAt(AT_FDCWD, path, O.RDONLY);
      setXattr(fd, "user.lanfree.test", value);
      if (Deno.uid() === 0) setXattr(fd, "trusted.lanfree", encoder.encode("root only"));
      close(fd);
    }
    const summary = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    await restoreSnapshot({
      repo: `${dir}/repo`,
      snapshot: summary.snapshot,
      target: `${dir}/out`,
    });
    for (const path of [`${dir}/out/d`, `${dir}/out/d/f`]) {
      const fd = openAt(AT_FDCWD, path, O.RDONLY);
      try {
        assert.deepEqual(getXattr(fd, "user.lanfree.test"), value, path);
        // As GNU tar: every attribute is recorded, only the user namespace is restored.
        const names = listXattrs(fd).map((n) => new TextDecoder().decode(n));
        assert.ok(!names.includes("trusted.lanfree"), names.join(", "));
      } finally {
        close(fd);
      }
    }
    const archive = `${dir}/repo/snapshots/${summary.snapshot}.tar`;
    const listed = await new Deno.Command("tar", { args: ["--xattrs", "-tvvf", archive] }).output();
    assert.ok(listed.success);
    await gnuTarExtract(archive, `${dir}/tar`, "--xattrs", "--xattrs-include=user.*");
    const fd = openAt(AT_FDCWD, `${dir}/tar/d/f`, O.RDONLY);
    try {
      assert.deepEqual(getXattr(fd, "user.lanfree.test"), value);
    } finally {
      close(fd);
    }
  });
});

Deno.test("a rerun removes the stale temporaries a killed restore left, and leaves one still in use", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src/sub`, { recursive: true });
    await Deno.writeTextFile(`${dir}/src/sub/a`, "a");
    const { snapshot } = await runLocalBackup({ source: `${dir}/src`, repo: `${dir}/repo` });
    await Deno.mkdir(`${dir}/out/sub`, { recursive: true });
    const stale = [
      `${dir}/out/.lanfree-0123456789abcdef.partial`,
      `${dir}/out/sub/.lanfree-fedcba9876543210.partial`,
    ];
    for (const path of stale) await Deno.writeTextFile(path, "cut off");
    const busyPath = `${dir}/out/sub/.lanfree-00000000000000aa.partial`;
    const busy = await Deno.open(busyPath, { write: true, create: true });
    await busy.lock(true); // a restore still writing it holds its lock
    const notOurs = `${dir}/out/.lanfree-not-ours.partial`;
    await Deno.writeTextFile(notOurs, "someone else's");
    await new Promise((resolve) => setTimeout(resolve, 5)); // their status changed before the rerun
    try {
      const summary = await restoreSnapshot({
        repo: `${dir}/repo`,
        snapshot,
        target: `${dir}/out`,
        overwrite: true,
      });
      assert.equal(summary.staleRemoved, 2);
      for (const path of stale) await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
      assert.ok((await Deno.lstat(busyPath)).isFile, "a locked temporary is in use: kept");
      assert.ok((await Deno.lstat(notOurs)).isFile, "another name pattern: kept");
      assert.equal(await Deno.readTextFile(`${dir}/out/sub/a`), "a");
    } finally {
      busy.close();
    }
  });
});
