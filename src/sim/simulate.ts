/**
 * Runs seeds of the simulated world and checks the invariants after each: the engine behind
 * `deno task simulate` and the simulation test.
 *
 * @module
 */

import { initRepository } from "../app/repository/repository.ts";
import { checkInvariants, readTree } from "./invariants.ts";
import { SeededRandom, VirtualTime } from "./virtual_time.ts";
import { runLocalBackup } from "../app/jobs/local_backup.ts";
import { FAULT_KINDS, type FaultKind, runWorld, type WorldHooks, type WorldRun } from "./world.ts";

/** What one seed gave. */
export interface SeedReport {
  readonly seed: number;
  readonly run: WorldRun;
  /** Invariants that did not hold (empty when all did). */
  readonly violations: string[];
}

/** Fills `dir` with a small tree drawn from `random`: 1-4 files, maybe a subdirectory. */
async function fillSource(dir: string, random: SeededRandom): Promise<void> {
  const files = random.between(1, 4);
  if (random.below(2) === 1) await Deno.mkdir(`${dir}/sub`);
  for (let i = 0; i < files; i++) {
    const bytes = new Uint8Array(random.between(0, 6000));
    for (let b = 0; b < bytes.length; b++) bytes[b] = random.below(256);
    const inSub = random.below(3) === 0 &&
      await Deno.lstat(`${dir}/sub`).then(() => true, () => false);
    await Deno.writeFile(`${dir}/${inSub ? "sub/" : ""}f${i}.bin`, bytes);
  }
}

/**
 * Gives the repository a snapshot of the source (the local backup, on its own virtual clock a
 * day before the world's), then changes the source: one file rewritten with another length, one
 * added. The world's backup is then incremental: the server sends the parent's parts, the client
 * packs only what changed, and a restore reads both archives.
 */
async function addParent(paths: { source: string; repo: string }, random: SeededRandom) {
  const dayBefore = new VirtualTime(random.below(0x7fffffff), Date.UTC(2025, 11, 31));
  await dayBefore.run(() => runLocalBackup({ source: paths.source, repo: paths.repo }));
  const first = [...Deno.readDirSync(paths.source)].filter((e) => e.isFile).map((e) => e.name)
    .sort()[0];
  const grown = new Uint8Array(random.between(1, 3000));
  for (let b = 0; b < grown.length; b++) grown[b] = random.below(256);
  if (first !== undefined) {
    const old = await Deno.readFile(`${paths.source}/${first}`);
    await Deno.writeFile(`${paths.source}/${first}`, new Uint8Array([...old, ...grown]));
  }
  await Deno.writeFile(`${paths.source}/added.bin`, grown);
}

/**
 * Runs one seed: a fresh source, repository and target in a temporary directory, the world, and
 * the invariant check; the directory is removed after.
 *
 * @param seed the seed
 * @param faults the fault kinds it may draw (default all)
 * @param hooks wrappers for mutant tests
 * @returns the run and the violations
 */
export async function simulateSeed(
  seed: number,
  faults: readonly FaultKind[] = FAULT_KINDS,
  hooks: WorldHooks = {},
): Promise<SeedReport> {
  const base = await Deno.makeTempDir({ prefix: "lanfree-sim-", dir: await simDir() });
  try {
    const paths = {
      base,
      source: `${base}/source`,
      repo: `${base}/repo`,
      target: `${base}/target`,
    };
    await Deno.mkdir(paths.source);
    const random = new SeededRandom(seed ^ 0x5eed);
    await fillSource(paths.source, random);
    await initRepository(paths.repo, Date.UTC(2026, 0, 1));
    if (random.below(2) === 1) await addParent(paths, random);
    const before = await readTree(paths.repo);
    const run = await runWorld(seed, paths, faults, hooks);
    await Deno.mkdir(`${base}/check`);
    const violations = await checkInvariants(run, paths, before, `${base}/check`).catch(
      (error: Error) => [`the invariant check itself failed: ${error.stack ?? error.message}`],
    );
    return { seed, run, violations };
  } finally {
    await Deno.remove(base, { recursive: true });
  }
}

/** The command that replays one seed exactly. */
export function replayCommand(seed: number, faults: readonly FaultKind[]): string {
  const list = faults.length === FAULT_KINDS.length ? "" : ` --faults ${faults.join(",")}`;
  return `deno task simulate --seed ${seed}${list}`;
}

/** Where seeds keep their files: `/dev/shm` when there is one (syncs cost nothing in memory). */
async function simDir(): Promise<string | undefined> {
  const shm = await Deno.stat("/dev/shm").then((info) => info.isDirectory, () => false);
  return shm ? "/dev/shm" : undefined;
}
