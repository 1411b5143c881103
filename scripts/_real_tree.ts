/**
 * A generated tree shaped like a real system directory (issue 15's measurement: 53,562 entries,
 * 46,398 files, 3,218 directories, 3,946 symlinks, 559 MB): file sizes drawn from a log-normal
 * distribution (median 3 KiB, a tail capped at 4 MiB, a few empty files), about 7% symlinks
 * (relative ones to siblings, absolute ones that dangle), directories up to 8 deep, a few
 * non-ASCII names. Everything (shape, names, sizes, contents) comes from one seed, so a tree is
 * the same on every machine; it is cached under `.lanfree/bench/` with a marker written last,
 * so an interrupted generation is redone.
 *
 * @module
 */

/** What a generated tree holds. */
export interface RealTreeStats {
  readonly seed: number;
  readonly entries: number;
  readonly files: number;
  readonly dirs: number;
  readonly symlinks: number;
  readonly fileBytes: number;
}

/** Shape of a tree to generate. */
export interface RealTreeShape {
  readonly seed: number;
  readonly files: number;
  readonly dirs: number;
  readonly symlinks: number;
  /** Median file size in bytes (log-normal). */
  readonly medianBytes: number;
  /** Largest file. */
  readonly maxBytes: number;
  /** Deepest directory (the root's children are depth 1). */
  readonly depthMax: number;
}

/** The default tree: about 53.5k entries like the one issue 15 measured. */
export const SMALL_TREE: RealTreeShape = {
  seed: 15,
  files: 46_400,
  dirs: 3_200,
  symlinks: 3_900,
  medianBytes: 3 * 1024,
  maxBytes: 4 << 20,
  depthMax: 8,
};

/** Log-normal spread giving a mean about four times the median (12 KiB at a 3 KiB median). */
const SIZE_SIGMA = 1.66;
/** Share of empty files. */
const EMPTY_SHARE = 0.02;
/** Share of names with non-ASCII letters. */
const UNICODE_SHARE = 0.01;

/** sfc32: a small, fast, seeded generator (32-bit state words). */
export class Random {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.next32();
  }

  next32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    return this.next32() / 0x1_0000_0000;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A standard normal deviate (Box-Muller). */
  normal(): number {
    const u = Math.max(this.next(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }

  /** Fills `words` with random 32-bit words. */
  fill(words: Uint32Array): void {
    for (let i = 0; i < words.length; i++) words[i] = this.next32();
  }
}

const STEMS = [
  "lib",
  "share",
  "doc",
  "include",
  "python3",
  "site-packages",
  "locale",
  "man",
  "icons",
  "config",
  "modules",
  "plugins",
  "test",
  "data",
];
const EXTENSIONS = [".so", ".py", ".h", ".txt", ".gz", ".json", ".conf", ".png", ".mo", ""];

function nameOf(random: Random, index: number, kind: "d" | "f" | "l"): string {
  const stem = STEMS[random.below(STEMS.length)]!;
  const unicode = random.next() < UNICODE_SHARE ? "-é✓" : "";
  const extension = kind === "d" ? "" : EXTENSIONS[random.below(EXTENSIONS.length)]!;
  return `${stem}${unicode}-${kind}${index}${extension}`;
}

function fileSize(random: Random, shape: RealTreeShape): number {
  if (random.next() < EMPTY_SHARE) return 0;
  const size = Math.round(shape.medianBytes * Math.exp(SIZE_SIGMA * random.normal()));
  return Math.max(1, Math.min(shape.maxBytes, size));
}

/** Directories as paths below the root, each with its depth; parents come first. */
function planDirs(random: Random, shape: RealTreeShape): string[] {
  const dirs: Array<{ path: string; depth: number }> = [{ path: "", depth: 0 }];
  for (let i = 0; i < shape.dirs; i++) {
    // Bounded: a parent below depthMax exists (the root), so a few draws find one.
    let parent = dirs[random.below(dirs.length)]!;
    for (let tries = 0; parent.depth >= shape.depthMax && tries < 64; tries++) {
      parent = dirs[random.below(dirs.length)]!;
    }
    if (parent.depth >= shape.depthMax) parent = dirs[0]!;
    const name = nameOf(random, i, "d");
    dirs.push({
      path: parent.path === "" ? name : `${parent.path}/${name}`,
      depth: parent.depth + 1,
    });
  }
  return dirs.map((d) => d.path);
}

/** Writes one file of `size` bytes from the generator (a unique stream per file). */
function writeContent(path: string, size: number, random: Random, block: Uint32Array): void {
  const file = Deno.openSync(path, { write: true, createNew: true });
  try {
    const bytes = new Uint8Array(block.buffer);
    for (let left = size; left > 0;) {
      const n = Math.min(left, bytes.length);
      random.fill(block.subarray(0, Math.ceil(n / 4)));
      for (let at = 0; at < n;) at += file.writeSync(bytes.subarray(at, n));
      left -= n;
    }
  } finally {
    file.close();
  }
}

/**
 * Generates a tree at `root` (which must not exist).
 *
 * @param root where to create it
 * @param shape its shape and seed
 * @returns what it holds
 */
export function generateRealTree(root: string, shape: RealTreeShape): RealTreeStats {
  const random = new Random(shape.seed);
  const dirs = planDirs(random, shape);
  Deno.mkdirSync(root);
  for (const dir of dirs) if (dir !== "") Deno.mkdirSync(`${root}/${dir}`);
  const block = new Uint32Array(1 << 18);
  const files: string[] = [];
  let fileBytes = 0;
  for (let i = 0; i < shape.files; i++) {
    const dir = dirs[random.below(dirs.length)]!;
    const path = dir === "" ? nameOf(random, i, "f") : `${dir}/${nameOf(random, i, "f")}`;
    const size = fileSize(random, shape);
    writeContent(`${root}/${path}`, size, random, block);
    files.push(path);
    fileBytes += size;
  }
  for (let i = 0; i < shape.symlinks; i++) {
    const dir = dirs[random.below(dirs.length)]!;
    const path = dir === "" ? nameOf(random, i, "l") : `${dir}/${nameOf(random, i, "l")}`;
    const target = random.next() < 0.7
      ? files[random.below(files.length)]!.split("/").pop()!
      : `/usr/lib/x86_64-linux-gnu/${nameOf(random, i, "f")}`;
    Deno.symlinkSync(target, `${root}/${path}`);
  }
  const utimesMs = 1_600_000_000_000;
  for (const dir of dirs) Deno.utimeSync(`${root}/${dir}`, utimesMs / 1000, utimesMs / 1000);
  return {
    seed: shape.seed,
    entries: shape.files + shape.dirs + shape.symlinks,
    files: shape.files,
    dirs: shape.dirs,
    symlinks: shape.symlinks,
    fileBytes,
  };
}

/**
 * The cached tree of `shape` under `cacheDir`, generated on first use.
 *
 * @param cacheDir e.g. `.lanfree/bench`
 * @param shape the tree's shape and seed
 * @param log prints progress
 * @returns the tree's root and what it holds
 */
export function cachedRealTree(
  cacheDir: string,
  shape: RealTreeShape,
  log: (line: string) => void = () => {},
): { root: string; stats: RealTreeStats } {
  const name = `real-tree-v1-s${shape.seed}-f${shape.files}-d${shape.dirs}-l${shape.symlinks}`;
  const base = `${cacheDir}/${name}`;
  const marker = `${base}/stats.json`;
  try {
    return { root: `${base}/tree`, stats: JSON.parse(Deno.readTextFileSync(marker)) };
  } catch {
    // not there yet (or cut off): generate it again
  }
  try {
    Deno.removeSync(base, { recursive: true });
  } catch {
    // nothing to remove
  }
  return generateInto(base, marker, shape, log);
}

function generateInto(
  base: string,
  marker: string,
  shape: RealTreeShape,
  log: (line: string) => void,
): { root: string; stats: RealTreeStats } {
  Deno.mkdirSync(base, { recursive: true });
  log(`generating ${base} (seed ${shape.seed}) ...`);
  const stats = generateRealTree(`${base}/tree`, shape);
  Deno.writeTextFileSync(marker, JSON.stringify(stats));
  return { root: `${base}/tree`, stats };
}
