/**
 * `deno task simulate [--seeds N] [--seed S] [--faults LIST] [--json]`: runs seeds of the
 * simulated world (the real handshake driver, session, backup client and server and restore on
 * virtual time, see `src/sim/`) and checks the invariants after each. A failure prints the seed,
 * the one-line command that replays it exactly, and the run's event trace; the exit code is 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { FAULT_KINDS, type FaultKind } from "../src/sim/world.ts";
import { replayCommand, type SeedReport, simulateSeed } from "../src/sim/simulate.ts";

const USAGE = `usage: deno task simulate [--seeds N] [--seed S] [--faults LIST] [--json]
  --seeds N      run seeds 1..N (default 100), or S..S+N-1 with --seed
  --seed S       run seed S alone (with --seeds: the first of N)
  --faults LIST  comma-separated fault kinds a seed may draw (default all):
                 ${FAULT_KINDS.join(", ")}
  --json         one JSON object per seed, then a summary object`;

function parseFaults(list: string | undefined): FaultKind[] {
  if (list === undefined) return [...FAULT_KINDS];
  const kinds = list.split(",").map((k) => k.trim()).filter((k) => k.length > 0);
  for (const kind of kinds) {
    if (!(FAULT_KINDS as readonly string[]).includes(kind)) {
      throw new Error(`unknown fault kind ${kind}; known: ${FAULT_KINDS.join(", ")}`);
    }
  }
  return kinds as FaultKind[];
}

function seedLine(report: SeedReport): object {
  const { run } = report;
  return {
    seed: report.seed,
    fault: run.fault,
    flow: run.flow,
    fired: run.fired,
    backup: { client: run.backup.client.status, server: run.backup.server.status },
    restore: { receiver: run.restore.receiver.status, sender: run.restore.sender.status },
    committed: run.committed ?? null,
    virtualMs: run.virtualMs,
    violations: report.violations,
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seeds: { type: "string" },
      seed: { type: "string" },
      faults: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const faults = parseFaults(values.faults);
  const first = values.seed === undefined ? 1 : Number(values.seed);
  const count = values.seeds === undefined
    ? (values.seed === undefined ? 100 : 1)
    : Number(values.seeds);
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(count) || count < 1) {
    throw new Error(`--seed and --seeds must be integers (--seeds at least 1)\n${USAGE}`);
  }
  const startedMs = performance.now();
  const failed: SeedReport[] = [];
  const kindsFired = new Set<string>();
  for (let seed = first; seed < first + count; seed++) {
    const report = await simulateSeed(seed, faults);
    report.run.fired.forEach((kind) => kindsFired.add(kind));
    if (values.json) console.log(JSON.stringify(seedLine(report)));
    if (report.violations.length === 0) continue;
    failed.push(report);
    if (!values.json) {
      console.log(`seed ${seed} FAILED (fault ${report.run.fault}, flow ${report.run.flow}):`);
      for (const violation of report.violations) console.log(`  - ${violation}`);
      console.log(`replay: ${replayCommand(seed, faults)}`);
      console.log(`trace:\n${report.run.trace.map((line) => `  ${line}`).join("\n")}`);
    }
  }
  const seconds = (performance.now() - startedMs) / 1000;
  const summary = {
    seeds: count,
    failed: failed.map((r) => r.seed),
    faultKindsFired: [...kindsFired].sort(),
    seconds: Math.round(seconds * 100) / 100,
    seedsPerSecond: Math.round((count / seconds) * 10) / 10,
  };
  if (values.json) console.log(JSON.stringify({ summary }));
  else {
    console.log(
      `${count} seeds, ${failed.length} failed, ${kindsFired.size} fault kinds fired, ` +
        `${summary.seconds} s (${summary.seedsPerSecond} seeds/s)`,
    );
  }
  return failed.length === 0 ? 0 : 1;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(2);
  }
}
