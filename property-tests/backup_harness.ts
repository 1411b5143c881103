/**
 * The Deno side of the backup suite: writes generated trees to disk, applies changes, describes
 * trees with its own lstat walk, and drives lanfree's local backup, restore and archive reader.
 *
 * @module
 */

import tar from "tar-stream";
import { runLocalBackup } from "../src/app/jobs/local_backup.ts";
import { openRepository, readManifest, repoPaths } from "../src/app/repository/repository.ts";
import { verifyRepository } from "../src/app/repository/verify.ts";
import { openArchive } from "../src/app/repository/_archive_read.ts";
import { readMemberHead } from "../src/app/repository/_tar_member.ts";
import { restoreSnapshot } from "../src/app/repository/restore.ts";
import { describeTree } from "../src/app/_testing.ts";
import type { BackupHarness, ChangeSpec, NodeSpec, SeenEntry } from "./backup_suite.ts";

/** Deterministic bytes from a seed (xorshift32), fast enough for multi-MiB files. */
function contentOf(sizeBytes: number, seed: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(sizeBytes / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return new Uint8Array(words.buffer, 0, sizeBytes);
}

const join = (parent: string, name: string) => (parent === "" ? name : `${parent}/${name}`);

async function writeTree(root: string, nodes: readonly NodeSpec[]): Promise<void> {
  await Deno.mkdir(root, { recursive: true });
  const dirs: NodeSpec[] = [];
  const dirPaths = [""];
  const files: Array<[string, NodeSpec]> = [];
  const used = new Set<string>();
  for (const node of nodes) {
    const path = join(dirPaths[node.parent % dirPaths.length]!, node.name);
    if (used.has(path)) continue;
    used.add(path);
    if (node.kind === "dir") {
      await Deno.mkdir(`${root}/${path}`);
      dirs.push({ ...node, name: path });
      dirPaths.push(path);
    } else if (node.kind === "symlink") await Deno.symlink(node.target, `${root}/${path}`);
    else {
      await Deno.writeFile(`${root}/${path}`, contentOf(node.sizeBytes, node.seed));
      files.push([path, node]);
    }
  }
  for (const [path, node] of files) {
    await Deno.chmod(`${root}/${path}`, node.mode);
    await Deno.utime(`${root}/${path}`, node.mtimeMs / 1000, node.mtimeMs / 1000);
  }
  for (const dir of dirs.reverse()) {
    await Deno.chmod(`${root}/${dir.name}`, dir.mode | 0o700);
    await Deno.utime(`${root}/${dir.name}`, dir.mtimeMs / 1000, dir.mtimeMs / 1000);
  }
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

async function applyChange(root: string, change: ChangeSpec): Promise<void> {
  const entries = await describeTree(root);
  const files = entries.filter((e) => e.type === "file");
  const dirs = ["", ...entries.filter((e) => e.type === "dir").map((e) => e.path)];
  const any = entries[change.pick % Math.max(entries.length, 1)];
  const file = files[change.pick % Math.max(files.length, 1)];
  if (change.op === "modify" && file !== undefined) {
    const path = `${root}/${file.path}`;
    await Deno.chmod(path, 0o600);
    await Deno.writeFile(path, contentOf(change.sizeBytes, change.seed));
    await Deno.chmod(path, file.mode);
    const mtimeSeconds = ((file.mtimeMs ?? 0) + 1 + (change.seed % 100_000)) / 1000;
    await Deno.utime(path, mtimeSeconds, mtimeSeconds);
  } else if (change.op === "delete" && any !== undefined) {
    await Deno.remove(`${root}/${any.path}`, { recursive: true });
  } else if (change.op === "add") {
    const path = `${root}/${join(dirs[change.pick % dirs.length]!, change.name)}`;
    if (await exists(path)) return;
    await Deno.writeFile(path, contentOf(change.sizeBytes, change.seed));
    await Deno.utime(path, 1_500_000_000 + change.seed / 1000, 1_500_000_000 + change.seed / 1000);
  } else if (change.op === "rename" && any !== undefined) {
    const slash = any.path.lastIndexOf("/");
    const to = `${root}/${join(slash === -1 ? "" : any.path.slice(0, slash), change.name)}`;
    if (!(await exists(to))) await Deno.rename(`${root}/${any.path}`, to);
  } else if (change.op === "chmod" && any !== undefined && any.type !== "symlink") {
    await Deno.chmod(`${root}/${any.path}`, any.type === "dir" ? change.mode | 0o700 : change.mode);
  }
}

async function archivedFiles(repo: string, snapshot: string): Promise<string[]> {
  const extract = tar.extract();
  const bytes = await Deno.readFile(repoPaths.archive({ path: repo }, snapshot));
  extract.end(bytes);
  const names: string[] = [];
  for await (const entry of extract) {
    if (entry.header.type === "file") names.push(entry.header.name);
    for await (const _ of entry as AsyncIterable<Uint8Array>) { /* skip the body */ }
  }
  return names;
}

/** A snapshot's manifest entry for a file, or an error naming what is missing. */
async function fileEntry(repo: string, snapshot: string, path: string) {
  const manifest = await readManifest(await openRepository(repo), snapshot);
  const entry = manifest.entries.find((e) => e.path === path);
  if (entry?.type !== "file") throw new Error(`snapshot ${snapshot} has no file ${path}`);
  const primary = entry.hardlink === undefined
    ? entry
    : manifest.entries.find((e) => e.path === entry.hardlink);
  if (primary?.type !== "file" || primary.offset === undefined) {
    throw new Error(`file ${path} of snapshot ${snapshot} has no member offset (version 1?)`);
  }
  return primary;
}

/** Flips every bit of one byte of a file's stored content, in the archive that holds it. */
async function corruptFileByte(
  repo: string,
  snapshot: string,
  path: string,
  at: number,
): Promise<boolean> {
  const entry = await fileEntry(repo, snapshot, path);
  const archive = repoPaths.archive({ path: repo }, entry.data);
  const reader = await openArchive(archive);
  const head = await readMemberHead(reader, entry.offset!).finally(() => reader.close());
  if (head.sparseRealSize !== undefined) throw new Error(`${path} is stored sparse`);
  if (head.storedBytes === 0) return false;
  const file = await Deno.open(archive, { read: true, write: true });
  try {
    const byte = new Uint8Array(1);
    const position = head.dataOffset + (at % head.storedBytes);
    await file.seek(position, Deno.SeekMode.Start);
    if (await file.read(byte) !== 1) throw new Error(`no byte at ${position} of ${archive}`);
    byte[0] = byte[0]! ^ 0xff;
    await file.seek(position, Deno.SeekMode.Start);
    await file.write(byte);
  } finally {
    file.close();
  }
  return true;
}

/** Renames one entry of a manifest as stored, bypassing every check (an attacker's edit). */
async function renameEntry(repo: string, snapshot: string, from: string, to: string) {
  const path = repoPaths.manifest({ path: repo }, snapshot);
  const manifest = JSON.parse(await Deno.readTextFile(path)) as { entries: { path: string }[] };
  const entry = manifest.entries.find((e) => e.path === from);
  if (entry === undefined) throw new Error(`snapshot ${snapshot} has no entry ${from}`);
  entry.path = to;
  await Deno.writeTextFile(path, JSON.stringify(manifest));
}

/** The harness over lanfree's local backup and the real disk. */
export const denoBackupHarness: BackupHarness = {
  makeDir: () => Deno.makeTempDir({ prefix: "lanfree-prop-" }),
  removeDir: (path) => Deno.remove(path, { recursive: true }),
  writeTree,
  applyChange,
  describe: (root): Promise<SeenEntry[]> => describeTree(root),
  backup: (source, repo, incremental) => runLocalBackup({ source, repo, incremental }),
  restore: async (repo, snapshot, target) => void await restoreSnapshot({ repo, snapshot, target }),
  archivedFiles,
  verify: async (repo, snapshot) =>
    (await verifyRepository(repo, snapshot)).problems.map((p) => p.message),
  corruptFileByte,
  renameEntry,
};
