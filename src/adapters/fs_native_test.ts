import assert from "node:assert/strict";
import {
  AT_FDCWD,
  close,
  fchmod,
  ftruncate,
  futimens,
  getXattr,
  linkAt,
  linkFd,
  listXattrs,
  mkdirAt,
  type NativeFsError,
  O,
  openAt,
  pread,
  pwriteAll,
  readDirNames,
  readLinkAt,
  renameAt,
  seekData,
  seekHole,
  setXattr,
  statAt,
  statFd,
  symlinkAt,
  unlinkAt,
} from "./fs_native.ts";

const RAW_NAME = new Uint8Array([0x61, 0xff, 0x62]); // "a\xffb": not UTF-8

async function withDir(body: (dir: string, fd: number) => Promise<void> | void) {
  const dir = await Deno.makeTempDir({ prefix: "lanfree-native-" });
  const fd = openAt(AT_FDCWD, dir, O.RDONLY | O.DIRECTORY);
  try {
    await body(dir, fd);
  } finally {
    close(fd);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("statAt() reports what Deno.lstat reports, never following a symlink", async () => {
  await withDir(async (dir, fd) => {
    await Deno.writeTextFile(`${dir}/f`, "hello");
    await Deno.symlink("f", `${dir}/l`);
    for (const name of ["f", "l"]) {
      const native = statAt(fd, name);
      const deno = await Deno.lstat(`${dir}/${name}`);
      assert.equal(native.dev, deno.dev);
      assert.equal(native.ino, deno.ino);
      assert.equal(native.size, deno.size);
      assert.equal(native.mode, deno.mode! & 0o7777);
      assert.equal(native.mtimeMs, deno.mtime!.getTime());
      assert.equal(native.uid, deno.uid);
      assert.equal(native.nlink, deno.nlink);
    }
    assert.equal(statAt(fd, "f").type, "file");
    assert.equal(statAt(fd, "l").type, "symlink");
    assert.throws(() => statAt(fd, "missing"), (e: NativeFsError) => e.code === "ENOENT");
  });
});

Deno.test("statAt() reads times before 1970 and far ahead as Deno.lstat does (the file system may clamp them)", async () => {
  await withDir(async (dir, fd) => {
    // Seconds that need the sign (and, where the file system keeps them, the high 32 bits).
    const cases = [-1.5, -86_400 * 365 * 80 + 0.25, 2 ** 32 + 7.125, 2 ** 40 + 0.5];
    for (const [i, seconds] of cases.entries()) {
      await Deno.writeTextFile(`${dir}/t${i}`, "x");
      await Deno.utime(`${dir}/t${i}`, seconds, seconds);
      const native = statAt(fd, `t${i}`);
      const deno = await Deno.lstat(`${dir}/t${i}`);
      assert.equal(native.mtimeMs, deno.mtime!.getTime(), `mtime of ${seconds} s`);
    }
  });
});

Deno.test("names that are not UTF-8 are made, listed, read and renamed byte-exact", async () => {
  await withDir((_dir, fd) => {
    const file = openAt(fd, RAW_NAME, O.WRONLY | O.CREAT | O.EXCL, 0o600);
    pwriteAll(file, new Uint8Array([1, 2, 3]), 0);
    close(file);
    symlinkAt(RAW_NAME, fd, new Uint8Array([0x6c, 0xfe]));
    const names = readDirNames(fd).map((n) => [...n].join(","));
    assert.deepEqual(names.sort(), ["108,254", "97,255,98"]);
    assert.deepEqual([...readLinkAt(fd, new Uint8Array([0x6c, 0xfe]))], [...RAW_NAME]);
    renameAt(fd, RAW_NAME, fd, new Uint8Array([0xc0]));
    assert.equal(statAt(fd, new Uint8Array([0xc0])).size, 3);
  });
});

Deno.test("openAt() with O_NOFOLLOW refuses a symlink (ELOOP) even under granular permissions", async () => {
  await withDir(async (dir, fd) => {
    await Deno.writeTextFile(`${dir}/secret`, "s");
    await Deno.symlink(`${dir}/secret`, `${dir}/link`);
    assert.throws(
      () => openAt(fd, "link", O.RDONLY | O.NOFOLLOW | O.NONBLOCK),
      (e: NativeFsError) => e.code === "ELOOP",
    );
    await Deno.mkdir(`${dir}/d`);
    await Deno.symlink(`${dir}/d`, `${dir}/dl`);
    assert.throws(
      () => openAt(fd, "dl", O.RDONLY | O.DIRECTORY | O.NOFOLLOW),
      (e: NativeFsError) => e.code === "ENOTDIR", // the kernel's answer for a directory open
    );
  });
});

Deno.test("seekData() and seekHole() find the data of a sparse file", async () => {
  await withDir((_dir, fd) => {
    const file = openAt(fd, "sparse", O.RDWR | O.CREAT | O.EXCL, 0o600);
    try {
      ftruncate(file, 64 << 20);
      pwriteAll(file, new Uint8Array(4096).fill(7), 16 << 20);
      const info = statFd(file);
      assert.equal(info.size, 64 << 20);
      assert.ok(info.allocatedBytes < 1 << 20, `allocated ${info.allocatedBytes}`);
      const data = seekData(file, 0);
      assert.equal(data, 16 << 20);
      assert.equal(seekHole(file, data!), (16 << 20) + 4096);
      assert.equal(seekData(file, (16 << 20) + 4096), null);
      const back = new Uint8Array(4096);
      assert.equal(pread(file, back, 16 << 20), 4096);
      assert.equal(back[4095], 7);
    } finally {
      close(file);
    }
  });
});

Deno.test("extended attributes are listed, read and written through a descriptor", async () => {
  await withDir((_dir, fd) => {
    const file = openAt(fd, "x", O.RDWR | O.CREAT | O.EXCL, 0o600);
    try {
      setXattr(file, "user.lanfree", new Uint8Array([0, 1, 255]));
      setXattr(file, "user.empty", new Uint8Array(0));
      const names = listXattrs(file).map((n) => new TextDecoder().decode(n)).sort();
      assert.deepEqual(names, ["user.empty", "user.lanfree"]);
      assert.deepEqual([...getXattr(file, "user.lanfree")!], [0, 1, 255]);
      assert.deepEqual([...getXattr(file, "user.empty")!], []);
      assert.equal(getXattr(file, "user.gone"), null);
    } finally {
      close(file);
    }
  });
});

Deno.test("mkdirAt, linkAt, unlinkAt, fchmod and futimens act on held descriptors", async () => {
  await withDir(async (dir, fd) => {
    mkdirAt(fd, "d", 0o700);
    const sub = openAt(fd, "d", O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
    try {
      const file = openAt(sub, "f", O.WRONLY | O.CREAT | O.EXCL, 0o600);
      fchmod(file, 0o640);
      futimens(file, 1_600_000_000_123);
      close(file);
      linkAt(sub, "f", fd, "g");
      const info = await Deno.lstat(`${dir}/g`);
      assert.equal(info.nlink, 2);
      assert.equal(info.mode! & 0o777, 0o640);
      assert.equal(info.mtime!.getTime(), 1_600_000_000_123);
      unlinkAt(sub, "f");
    } finally {
      close(sub);
    }
    unlinkAt(fd, "g");
    unlinkAt(fd, "d", true);
    assert.deepEqual(readDirNames(fd), []);
  });
});

Deno.test("an O_TMPFILE file has no name until linkFd gives it one, and linkFd never replaces a name", async () => {
  await withDir(async (dir, fd) => {
    const file = openAt(fd, ".", O.WRONLY | O.TMPFILE, 0o600);
    try {
      pwriteAll(file, new TextEncoder().encode("whole"), 0);
      assert.deepEqual(readDirNames(fd), [], "unnamed while written");
      linkFd(file, fd, "named");
      assert.equal(await Deno.readTextFile(`${dir}/named`), "whole");
      await Deno.writeTextFile(`${dir}/taken`, "kept");
      assert.throws(() => linkFd(file, fd, "taken"), (e: NativeFsError) => e.code === "EEXIST");
      assert.equal(await Deno.readTextFile(`${dir}/taken`), "kept");
    } finally {
      close(file);
    }
    const unnamed = openAt(fd, ".", O.WRONLY | O.TMPFILE, 0o600);
    close(unnamed); // closed without a name: gone
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["named", "taken"]);
  });
});
