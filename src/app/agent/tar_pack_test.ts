import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { HASH_WORKER_MIN_BYTES, packEntries } from "./tar_pack.ts";
import { walkTree } from "./tree_walk.ts";
import { describeTree, gnuTarList, withTempDir, writeFileWith } from "../_testing.ts";

const ODD_NAMES = [
  "-leading dash",
  "new\nline",
  "résumé – ünïcode 日本",
  "x".repeat(120),
  "sp ace",
];

async function packToFile(root: string, tarPath: string) {
  const { entries } = await walkTree(root);
  const out = await Deno.open(tarPath, { write: true, create: true });
  try {
    return await packEntries({ root, entries, sink: async (chunk) => void await out.write(chunk) });
  } finally {
    out.close();
  }
}

Deno.test("packEntries() makes a tar that GNU tar lists and extracts identically", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src/${"deep/".repeat(30)}end`, { recursive: true });
    await Deno.mkdir(`${dir}/src/empty dir`);
    for (const [i, name] of ODD_NAMES.entries()) {
      await writeFileWith(`${dir}/src/${name}`, new Uint8Array(i * 1000 + 1).fill(i), 0o640 + i);
    }
    await writeFileWith(`${dir}/src/empty`, "");
    await Deno.symlink("résumé – ünïcode 日本", `${dir}/src/link`);
    const result = await packToFile(`${dir}/src`, `${dir}/a.tar`);
    const listed = await gnuTarList(`${dir}/a.tar`);
    assert.ok(listed.includes("-leading dash"));
    assert.ok(listed.includes("new\\nline"), "GNU tar escapes the newline when listing");
    await Deno.mkdir(`${dir}/out`);
    const x = await new Deno.Command("tar", { args: ["-xf", `${dir}/a.tar`, "-C", `${dir}/out`] })
      .output();
    assert.ok(x.success, new TextDecoder().decode(x.stderr));
    const strip = (t: Awaited<ReturnType<typeof describeTree>>) =>
      t.map((e) => e.type === "dir" ? { ...e, mtimeMs: 0 } : e);
    assert.deepEqual(
      strip(await describeTree(`${dir}/out`)),
      strip(await describeTree(`${dir}/src`)),
    );
    assert.equal(result.archiveBytes, (await Deno.stat(`${dir}/a.tar`)).size);
  });
});

Deno.test("packEntries() hashes each file's bytes as read", async () => {
  await withTempDir(async (dir) => {
    const data = crypto.getRandomValues(new Uint8Array(65536));
    const big = new Uint8Array(3 * 1024 * 1024 + 17);
    for (let o = 0; o < big.length; o += data.length) big.set(data.subarray(0, big.length - o), o);
    await writeFileWith(`${dir}/big`, big);
    const { entries } = await walkTree(dir);
    let bytes = 0;
    const result = await packEntries({
      root: dir,
      entries,
      sink: (c) => {
        bytes += c.byteLength;
        return Promise.resolve();
      },
      readChunkBytes: 1 << 20,
    });
    assert.equal(result.packed.get("big")?.sha256, createHash("sha256").update(big).digest("hex"));
    assert.equal(result.packed.get("big")?.sizeBytes, big.length);
    assert.equal(bytes, result.archiveBytes);
  });
});

Deno.test("packEntries() skips a file that vanished after the walk and says so", async () => {
  await withTempDir(async (dir) => {
    await writeFileWith(`${dir}/a`, "aaa");
    await writeFileWith(`${dir}/b`, "bbb");
    const { entries } = await walkTree(dir);
    await Deno.remove(`${dir}/a`);
    const result = await packEntries({ root: dir, entries, sink: async () => {} });
    assert.deepEqual(result.skipped, [{ path: "a", reason: "vanished during the backup" }]);
    assert.deepEqual([...result.packed.keys()], ["b"]);
  });
});

Deno.test("packEntries() records a file that shrank while read as skipped", async () => {
  await withTempDir(async (dir) => {
    await writeFileWith(`${dir}/a`, "x".repeat(5000));
    const { entries } = await walkTree(dir);
    await Deno.truncate(`${dir}/a`, 10);
    const result = await packEntries({ root: dir, entries, sink: async () => {} });
    assert.deepEqual(result.skipped.map((s) => s.reason), ["shrank during the backup"]);
    assert.equal(result.packed.size, 0);
  });
});

Deno.test("packEntries() fails with the sink's error instead of hanging", async () => {
  await withTempDir(async (dir) => {
    for (let i = 0; i < 5; i++) await writeFileWith(`${dir}/f${i}`, new Uint8Array(3 << 20));
    const { entries } = await walkTree(dir);
    let calls = 0;
    const sink = () => {
      if (++calls === 3) return Promise.reject(new RangeError("channel reset"));
      return Promise.resolve();
    };
    await assert.rejects(packEntries({ root: dir, entries, sink }), {
      name: "RangeError",
      message: "channel reset",
    });
  });
});

Deno.test("packEntries() hashes a large archive off its thread with every file's hash right", async () => {
  await withTempDir(async (dir) => {
    const expected = new Map<string, string>();
    // Enough bytes for the hash worker, in files of many sizes crossing the staging buffers.
    for (let i = 0, total = 0; total < HASH_WORKER_MIN_BYTES + (4 << 20); i++) {
      const size = 1 + ((i * 397_531) % (3 << 20));
      const bytes = crypto.getRandomValues(new Uint8Array(Math.min(size, 65536)));
      const body = new Uint8Array(size);
      for (let o = 0; o < size; o += bytes.length) body.set(bytes.subarray(0, size - o), o);
      body[size - 1] = i & 0xff;
      await writeFileWith(`${dir}/f${i}`, body);
      expected.set(`f${i}`, createHash("sha256").update(body).digest("hex"));
      total += size;
    }
    const { entries } = await walkTree(dir);
    let archiveBytes = 0;
    const result = await packEntries({
      root: dir,
      entries,
      sink: (chunk) => {
        archiveBytes += chunk.byteLength;
        return Promise.resolve(); // a sink faster than hashing: buffers wait for the hasher
      },
    });
    assert.equal(result.archiveBytes, archiveBytes);
    assert.deepEqual(
      new Map([...result.packed].map(([path, file]) => [path, file.sha256])),
      expected,
    );
  });
});

/** A frame sink whose reservations come in the sizes given (cycled), its archive collected. */
function frameSinkOf(sizes: readonly number[]) {
  const parts: Uint8Array[] = [];
  let turn = 0;
  let reserved = new Uint8Array(0);
  return {
    parts,
    sink: {
      reserve(maxBytes: number): Promise<Uint8Array> {
        reserved = new Uint8Array(Math.min(maxBytes, sizes[turn++ % sizes.length]!)).fill(0xee);
        return Promise.resolve(reserved);
      },
      commit(bytes: number): Promise<void> {
        parts.push(reserved.slice(0, bytes));
        return Promise.resolve();
      },
    },
  };
}

function joined(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  parts.reduce((at, part) => (out.set(part, at), at + part.length), 0);
  return out;
}

Deno.test("many tiny files pack byte-identically whether they fit the room at hand or straddle reservations", async () => {
  await withTempDir(async (dir) => {
    const contents = new Map<string, Uint8Array>();
    for (let i = 0; i < 300; i++) {
      const bytes = crypto.getRandomValues(new Uint8Array((i * 37) % 1537));
      contents.set(`d${i % 7}/f${i}`, bytes);
    }
    for (let d = 0; d < 7; d++) await Deno.mkdir(`${dir}/src/d${d}`, { recursive: true });
    for (const [path, bytes] of contents) await writeFileWith(`${dir}/src/${path}`, bytes);
    const { entries } = await walkTree(`${dir}/src`);
    const archives: Uint8Array[] = [];
    // Whole files in a large reservation; reservations smaller than a block, than a header plus
    // data, and of odd sizes, so headers, data and padding straddle them.
    for (const sizes of [[2 << 20], [700, 1300, 4096], [511, 513], [10_000, 3]]) {
      const { parts, sink } = frameSinkOf(sizes);
      const result = await packEntries({ root: `${dir}/src`, entries, sink });
      for (const [path, bytes] of contents) {
        const sha256 = createHash("sha256").update(bytes).digest("hex");
        assert.equal(result.packed.get(path)?.sha256, sha256, `${path} with ${sizes}`);
      }
      archives.push(joined(parts));
      assert.equal(result.archiveBytes, archives.at(-1)!.length);
    }
    const chunks: Uint8Array[] = [];
    await packEntries({
      root: `${dir}/src`,
      entries,
      sink: (c) => Promise.resolve(void chunks.push(c.slice())),
    });
    archives.push(joined(chunks));
    for (const archive of archives.slice(1)) assert.deepEqual(archive, archives[0]);
    await Deno.writeFile(`${dir}/a.tar`, archives[0]!);
    await Deno.mkdir(`${dir}/out`);
    const x = await new Deno.Command("tar", { args: ["-xf", `${dir}/a.tar`, "-C", `${dir}/out`] })
      .output();
    assert.ok(x.success, new TextDecoder().decode(x.stderr));
    for (const [path, bytes] of contents) {
      assert.deepEqual(await Deno.readFile(`${dir}/out/${path}`), bytes);
    }
  });
});

Deno.test("a small file swapped for a symlink or replaced after the walk is still refused when packed in place", async () => {
  await withTempDir(async (dir) => {
    await writeFileWith(`${dir}/secret`, "do not follow");
    await Deno.mkdir(`${dir}/src`);
    for (const name of ["a", "b", "c"]) await writeFileWith(`${dir}/src/${name}`, name.repeat(10));
    const { entries } = await walkTree(`${dir}/src`);
    await Deno.remove(`${dir}/src/a`);
    await Deno.symlink(`${dir}/secret`, `${dir}/src/a`);
    await Deno.rename(`${dir}/src/b`, `${dir}/b-old`); // keeps the old inode alive, so b's is new
    await writeFileWith(`${dir}/src/b`, "bbbbbbbbbb");
    const { parts, sink } = frameSinkOf([2 << 20]);
    const result = await packEntries({ root: `${dir}/src`, entries, sink });
    assert.deepEqual(result.skipped, [
      { path: "a", reason: "changed type during the backup (now a symlink)" },
      { path: "b", reason: "was replaced by another file during the backup" },
    ]);
    assert.deepEqual([...result.packed.keys()], ["c"]);
    const text = new TextDecoder().decode(joined(parts));
    assert.ok(!text.includes("do not follow"));
  });
});
