/**
 * `deno task conformance [--suite NAME] [--property TEXT] [--runs N] [--seed S] [--path P]
 * [--json]`: runs lanfree's conformance suites against lanfree's own implementations and prints
 * one line per property; a failure prints the counterexample and the command that replays it.
 * Whatever a property throws, an `invariant()` of a core included, and whatever escapes it (an
 * unhandled rejection, an error thrown in a timer) is that property's failure; the run goes on.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { StrayErrors, Suite } from "../property-tests/_suite.ts";
import { type PropertyResult, runSuites } from "../property-tests/_runner.ts";
import { socketsSuite } from "../property-tests/dispatch_suite.ts";
import { edgeSuites } from "../property-tests/edge_suites.ts";
import { createTcpSockets } from "../src/adapters/tcp.ts";
import { createRouter, unavailableSockets } from "../src/core/dispatch/router.ts";
import { backupSuite } from "../property-tests/backup_suite.ts";
import { denoBackupHarness } from "../property-tests/backup_harness.ts";
import { reliabilitySuite } from "../property-tests/reliability_suite.ts";
import { denoReliabilityHarness } from "../property-tests/reliability_harness.ts";
import { restoreReliabilitySuite } from "../property-tests/reliability_restore.ts";
import { denoRestoreCrashHarness } from "../property-tests/reliability_restore_harness.ts";
import { retentionSuite } from "../property-tests/retention_suite.ts";
import { retentionLifecycleSuite } from "../property-tests/retention_lifecycle_suite.ts";
import { denoLifecycleHarness } from "../property-tests/retention_lifecycle_harness.ts";
import { prunePlanSuite } from "../property-tests/prune_plan_suite.ts";
import { framesSuite } from "../property-tests/frames_suite.ts";
import { sessionMachineSuite } from "../property-tests/session_machine_suite.ts";
import { BackupServerMachine } from "../src/core/session/backup_server_machine.ts";
import { sessionPairSuite } from "../property-tests/session_pair_suite.ts";
import { BackupClientMachine } from "../src/core/session/backup_client_machine.ts";
import { restoreServerMachineSuite } from "../property-tests/restore_server_machine_suite.ts";
import { RestoreServerMachine } from "../src/core/session/restore_server_machine.ts";
import { restoreClientMachineSuite } from "../property-tests/restore_client_machine_suite.ts";
import { restorePairSuite } from "../property-tests/restore_pair_suite.ts";
import { RestoreClientMachine } from "../src/core/session/restore_client_machine.ts";
import { lanfreeFrameCodecs } from "../property-tests/frames_lanfree.ts";
import { applyKeepRules } from "../src/core/backup/retention.ts";
import { moveReferences, planPrune } from "../src/core/backup/prune_plan.ts";

/**
 * Every suite, bound to lanfree's own implementation: the platform-neutral ones of
 * {@link edgeSuites}, then the sockets model over TCP, the frame limits of the handshake's and
 * the session's frames, and the suites over the file system and processes.
 *
 * @returns the suites
 */
export function lanfreeSuites(): Suite[] {
  return [
    ...edgeSuites(),
    socketsSuite(() => ({
      sockets: createRouter({
        network: createTcpSockets({ ioTimeoutMs: 5_000 }),
        storage: unavailableSockets("storage", "not under test in this suite"),
      }),
      kind: "network",
      anyAddress: { kind: "network", host: "127.0.0.1", port: 0 },
    })),
    // Frame limits of the handshake's frames and the session's (the session is the backup
    // product's own, so these stay out of the edge bundle).
    ...lanfreeFrameCodecs().map(framesSuite),
    backupSuite(denoBackupHarness),
    retentionSuite(applyKeepRules),
    prunePlanSuite({ plan: planPrune, move: moveReferences }),
    sessionMachineSuite((times, startMs) => new BackupServerMachine(times, startMs)),
    sessionPairSuite({
      client: (times, startMs) => new BackupClientMachine(times, startMs),
      server: (times, startMs) => new BackupServerMachine(times, startMs),
    }),
    restoreServerMachineSuite((times, startMs) => new RestoreServerMachine(times, startMs)),
    restoreClientMachineSuite((times, startMs) => new RestoreClientMachine(times, startMs)),
    restorePairSuite({
      client: (times, startMs) => new RestoreClientMachine(times, startMs),
      server: (times, startMs) => new RestoreServerMachine(times, startMs),
    }),
    retentionLifecycleSuite(denoLifecycleHarness),
    restoreReliabilitySuite(denoRestoreCrashHarness),
    // Crash drills start and kill backup processes: only where running processes is allowed
    // (`deno task conformance` and the tests, not `deno task serve`).
    ...(Deno.permissions.querySync({ name: "run" }).state === "granted"
      ? [reliabilitySuite(denoReliabilityHarness)]
      : []),
  ];
}

const USAGE = `usage: deno task conformance [--suite NAME] [--property TEXT] [--runs N] [--seed S]
                                [--path P] [--json] [--list] [--help]

Runs every conformance suite (or those whose name starts with NAME) against lanfree's own
implementations. A failure prints the counterexample and the command that replays it.`;

function integerOption(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < min) {
    throw new Error(`--${name} must be an integer >= ${min}, got "${value}"`);
  }
  return parsed;
}

/** A word for the shell: single-quoted unless it is plain. */
function shellWord(text: string): string {
  return /^[\w.,:/=+-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

/**
 * The command that replays a failed property exactly.
 *
 * @param result a failed property's result
 * @returns `deno task conformance --suite ... --property ... --seed ...` and the path or runs
 */
export function replayCommand(result: PropertyResult): string {
  const replay = result.replay;
  const options = replay === undefined
    ? ""
    // A negative seed is one word with its option: the parser takes "-123" for an option.
    : (replay.seed < 0 ? ` --seed=${replay.seed}` : ` --seed ${replay.seed}`) +
      (replay.path === undefined ? "" : ` --path ${replay.path}`) +
      (replay.runs === undefined ? "" : ` --runs ${replay.runs}`);
  return `deno task conformance --suite ${shellWord(result.suite)} --property ${
    shellWord(result.property)
  }${options}`;
}

function printResult(result: PropertyResult, print: (line: string) => void): void {
  const verdict = result.skipped ? "SKIP" : result.passed ? "PASS" : "FAIL";
  const time = `${result.timeMs.toFixed(0)}ms`.padStart(7);
  print(
    `${verdict}  ${
      String(result.runs).padStart(5)
    } runs ${time}  ${result.suite}: ${result.property}`,
  );
  if (!result.passed) {
    print(result.report?.replace(/^/gm, "      ") ?? "");
    print(`      replay: ${replayCommand(result)}`);
  }
}

/**
 * Collects what escapes every `await` while suites run (unhandled rejections, errors thrown in
 * timers), so that it fails the property it came from instead of ending the process.
 *
 * @returns the collector, and `dispose` to stop listening
 */
export function collectStrays(): StrayErrors & { dispose(): void } {
  let errors: unknown[] = [];
  const onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    errors.push(event.reason);
  };
  const onError = (event: ErrorEvent) => {
    event.preventDefault();
    errors.push(event.error ?? event.message);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  return {
    take() {
      const taken = errors;
      errors = [];
      return taken;
    },
    dispose() {
      globalThis.removeEventListener("unhandledrejection", onRejection);
      globalThis.removeEventListener("error", onError);
    },
  };
}

/**
 * Runs the CLI: parses `args`, runs the suites, prints one line per property (or `--json`).
 *
 * @param args the command line, without the program
 * @param allSuites the suites to choose from (lanfree's own by default)
 * @param print where lines go
 * @returns the exit status: 0 all passed, 1 a property failed
 * @throws Error for bad usage or an unknown suite (the caller prints it and exits 2)
 */
export async function conformanceMain(
  args: string[],
  allSuites: () => Suite[] = lanfreeSuites,
  print: (line: string) => void = console.log,
): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      suite: { type: "string" },
      property: { type: "string" },
      runs: { type: "string" },
      seed: { type: "string" },
      path: { type: "string" },
      json: { type: "boolean", default: false },
      list: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    print(USAGE);
    return 0;
  }
  const all = allSuites();
  const suites = all.filter((suite) =>
    values.suite === undefined || suite.name.startsWith(values.suite)
  );
  if (suites.length === 0) {
    throw new Error(
      `no suite named "${values.suite}"; suites: ${all.map((s) => s.name).join(", ")}`,
    );
  }
  if (values.list) {
    for (const suite of suites) {
      for (const p of suite.properties) print(`${suite.name}: ${p.name}`);
    }
    return 0;
  }
  const strays = collectStrays();
  let results: PropertyResult[];
  try {
    results = await runSuites(suites, {
      runs: integerOption("runs", values.runs, 1),
      seed: integerOption("seed", values.seed, -(2 ** 31)),
      path: values.path,
      property: values.property,
      strays,
    });
  } finally {
    strays.dispose();
  }
  const failed = results.filter((result) => !result.passed).length;
  if (values.json) {
    print(JSON.stringify(
      results.map((result) =>
        result.passed ? result : { ...result, replayCommand: replayCommand(result) }
      ),
    ));
  } else {
    for (const result of results) printResult(result, print);
    print(`${results.length - failed} passed, ${failed} failed`);
  }
  return failed === 0 ? 0 : 1;
}

if (import.meta.main) {
  try {
    Deno.exit(await conformanceMain(Deno.args));
  } catch (error) {
    console.error(`conformance: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(2);
  }
}
