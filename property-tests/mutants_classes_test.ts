/**
 * One deliberately broken implementation per class of bug the suites once missed (issue 12),
 * each run through the exported suite that must catch it. A suite that passed here could not
 * fail for that class. (The first mutants, and the region-validation ones, are in
 * `mutants_test.ts`.)
 */

import assert from "node:assert/strict";
import { runSuites } from "./_runner.ts";
import type { Suite } from "./_suite.ts";
import { handshakeSuite, type MachineFactory } from "./handshake_suite.ts";
import { withHandle } from "./handshake_tamper.ts";
import { createHandshake } from "../src/core/handshake/mod.ts";
import type { HandshakeConfig } from "../src/core/handshake/config.ts";
import type { HandshakeRole } from "../src/core/handshake/types.ts";
import { type Message, wellKnownString } from "../src/core/wire/messages.ts";
import { framesSuite } from "./frames_suite.ts";
import { wireFrames } from "./frames_lanfree.ts";
import { FRAME_BYTES_MAX_DEFAULT } from "../src/core/wire/frame.ts";
import { stpSuite } from "./stp_suite.ts";
import { sharedArrayBufferRegions } from "../src/adapters/shm_region.ts";
import type { Region } from "../src/core/stp/region.ts";
import { changedRegions } from "./stp_harness.ts";
import { type BackupHarness, backupSuite, REFUSALS } from "./backup_suite.ts";
import { denoBackupHarness } from "./backup_harness.ts";
import { repoPaths } from "../src/app/repository/repository.ts";
import { type Manifest, parseManifest } from "../src/core/backup/manifest.ts";
import { openArchive } from "../src/app/repository/_archive_read.ts";
import { type ArchiveReader, readMemberHead } from "../src/app/repository/_tar_member.ts";
import { createHash } from "node:crypto";
import { blockWord } from "../src/core/stp/layout.ts";
import { BlockState, F, stateOf } from "../src/core/stp/block.ts";
import { sessionMachineSuite } from "./session_machine_suite.ts";
import { sessionPairSuite } from "./session_pair_suite.ts";
import { restoreServerMachineSuite } from "./restore_server_machine_suite.ts";
import { restoreClientMachineSuite } from "./restore_client_machine_suite.ts";
import { restorePairSuite } from "./restore_pair_suite.ts";
import {
  type RestoreClientAction,
  type RestoreClientEvent,
  RestoreClientMachine,
} from "../src/core/session/restore_client_machine.ts";
import {
  type RestoreServerAction,
  type RestoreServerEvent,
  RestoreServerMachine,
} from "../src/core/session/restore_server_machine.ts";
import {
  type BackupClientAction,
  type BackupClientEvent,
  BackupClientMachine,
} from "../src/core/session/backup_client_machine.ts";
import {
  type BackupServerAction,
  type BackupServerEvent,
  BackupServerMachine,
  type BackupServerTimes,
} from "../src/core/session/backup_server_machine.ts";

/** Runs one property (by a part of its name) and returns its failure report, or fails. */
async function caught(suite: Suite, property: string, runs?: number): Promise<string> {
  const [result] = await runSuites([suite], { property, ...(runs === undefined ? {} : { runs }) });
  assert.ok(result !== undefined, `${suite.name} has no property "${property}"`);
  assert.ok(!result.passed, `"${result.property}" passed ${result.runs} runs: the mutant escaped`);
  return result.report ?? "";
}

/** lanfree's machines, but `role` sees every received message through `launder`. */
function laundering(
  role: HandshakeRole,
  launder: (message: Message, config: HandshakeConfig) => Message,
): MachineFactory {
  return (r, config) => {
    const machine = createHandshake(r, config);
    if (r !== role) return machine;
    return withHandle(
      machine,
      (own, input, nowMs) =>
        own(
          input.type === "received" ? { ...input, message: launder(input.message, config) } : input,
          nowMs,
        ),
    );
  };
}

const TAMPERED = "changed on its way";

Deno.test("the handshake suite catches a file-system client that accepts any well-known string", async () => {
  const mutant = laundering(
    "fs-client",
    (message) =>
      message.type === "wellKnown" ? { type: "wellKnown", bytes: wellKnownString() } : message,
  );
  assert.match(await caught(handshakeSuite(mutant), TAMPERED), /well-known string/);
});

Deno.test("the handshake suite catches a database client that accepts another region's STG info", async () => {
  const mutant = laundering("db-client", (message, config) => {
    const stg = config.region?.stgs[0];
    if (message.type === "stgId" && stg !== undefined) return { type: "stgId", stg: stg.id };
    if (message.type === "stgLength" && stg !== undefined) {
      return { type: "stgLength", lengthBytes: stg.lengthBytes };
    }
    if (message.type === "regionId" && config.region !== undefined) {
      return { type: "regionId", regionId: config.region.regionId };
    }
    return message;
  });
  assert.match(await caught(handshakeSuite(mutant), TAMPERED), /STG id|STG length|region id/);
});

Deno.test("the handshake suite catches a file-system client that accepts any echoed descriptor", async () => {
  const mutant: MachineFactory = (role, config) => {
    const machine = createHandshake(role, config);
    if (role !== "fs-client") return machine;
    let sent: number | undefined;
    return withHandle(machine, (own, input, nowMs) => {
      const echo = input.type === "received" && input.message.type === "descriptor" &&
        sent !== undefined;
      const actions = own(
        echo ? { ...input, message: { type: "descriptor", fd: sent! } } : input,
        nowMs,
      );
      for (const action of actions) {
        if (action.type === "send" && action.message.type === "descriptor") {
          sent = action.message.fd;
        }
      }
      return actions;
    });
  };
  assert.match(await caught(handshakeSuite(mutant), TAMPERED), /descriptor/);
});

Deno.test("the frames suite catches a frame reader that accepts the maximum plus one byte", async () => {
  const mutant = framesSuite(wireFrames(FRAME_BYTES_MAX_DEFAULT, FRAME_BYTES_MAX_DEFAULT + 1));
  assert.match(
    await caught(mutant, "announcing more than the maximum"),
    /expected a SocketError EMSGSIZE/,
  );
});

Deno.test("the frames suite catches a frame reader that refuses a frame of exactly the maximum", async () => {
  const mutant = framesSuite(wireFrames(FRAME_BYTES_MAX_DEFAULT, FRAME_BYTES_MAX_DEFAULT - 1));
  // A run draws exactly the maximum one time in six: 20 runs miss it 2.6% of the time, 200 never.
  assert.match(await caught(mutant, "exactly the maximum", 200), /EMSGSIZE/);
});

/** SharedArrayBuffer regions, each changed by `change`. */
const mutantRegions = (name: string, change: (region: Region) => Region) =>
  changedRegions(name, sharedArrayBufferRegions, change);

const LEASES = "leases run out";

Deno.test("the STP suite catches a region that accepts a stale block reference after the block was reused", async () => {
  // It clears a freed block's state word whole, generation included: the block's next use gets
  // the generation of its last one, so the reference a dead host's zombie kept names it again.
  const mutant = mutantRegions("generation-forgetting", (region) => {
    const stateWords = new Set(
      Array.from(
        { length: region.layout.blockCount },
        (_, b) => blockWord(region.layout, b, F.state),
      ),
    );
    const memory = region.memory;
    return {
      ...region,
      memory: {
        byteLength: memory.byteLength,
        load: (i) => memory.load(i),
        compareExchange: (i, e, r) => memory.compareExchange(i, e, r),
        add: (i, d) => memory.add(i, d),
        notify: (i) => memory.notify(i),
        readBytes: (o, into) => memory.readBytes(o, into),
        writeBytes: (o, from) => memory.writeBytes(o, from),
        store: (i, v) =>
          memory.store(i, stateWords.has(i) && stateOf(v) === BlockState.free ? 0 : v),
      },
    };
  });
  assert.match(await caught(stpSuite(mutant), LEASES, 300), /stale reference.*expected ECONNRESET/);
});

Deno.test("the STP suite catches a region whose backlog limit is one too high", async () => {
  const mutant = mutantRegions("backlog-off-by-one", (region) => ({
    ...region,
    layout: { ...region.layout, backlogMax: region.layout.backlogMax + 1 },
  }));
  assert.match(await caught(stpSuite(mutant), LEASES), /backlog|ECONNREFUSED/);
});

/**
 * A restore as a careless third party could write one: the manifest taken as stored (or
 * validated), each file read at its member offset and written to `target/path`, its SHA-256
 * checked or not. Metadata is not restored: only what the refusal properties look at.
 */
async function carelessRestore(
  repo: string,
  snapshot: string,
  target: string,
  checks: { readonly hashes: boolean; readonly paths: boolean },
): Promise<void> {
  const raw = JSON.parse(await Deno.readTextFile(repoPaths.manifest({ path: repo }, snapshot)));
  const parsed = checks.paths
    ? parseManifest(raw)
    : { ok: true as const, manifest: raw as Manifest };
  if (!parsed.ok) throw new Error(`bad manifest: ${parsed.message}`);
  await Deno.mkdir(target, { recursive: true });
  for (const entry of parsed.manifest.entries) {
    const at = `${target}/${entry.path}`;
    if (entry.type === "dir") await Deno.mkdir(at, { recursive: true });
    else if (entry.type === "symlink") await Deno.symlink(entry.target, at);
    else {
      const reader = await openArchive(repoPaths.archive({ path: repo }, entry.data));
      const bytes = await readStored(reader, entry.offset!).finally(() => reader.close());
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      if (checks.hashes && sha256 !== entry.sha256) throw new Error(`${entry.path}: hash mismatch`);
      await Deno.mkdir(at.slice(0, at.lastIndexOf("/")), { recursive: true });
      await Deno.writeFile(at, bytes);
    }
  }
}

/** A member's stored bytes, read at its offset (its name unchecked). */
async function readStored(reader: ArchiveReader, offset: number): Promise<Uint8Array> {
  const head = await readMemberHead(reader, offset);
  const bytes = new Uint8Array(head.storedBytes);
  for (let filled = 0; filled < bytes.length;) {
    const got = await reader.read(bytes.subarray(filled), head.dataOffset + filled);
    if (got === 0) throw new Error(`the archive ends inside the member at ${offset}`);
    filled += got;
  }
  return bytes;
}

const withRestore = (checks: { hashes: boolean; paths: boolean }): BackupHarness => ({
  ...denoBackupHarness,
  restore: (repo, snapshot, target) => carelessRestore(repo, snapshot, target, checks),
});

Deno.test("the backup suite catches a restore that skips hash checks", async () => {
  const mutant = backupSuite(withRestore({ hashes: false, paths: true }));
  assert.match(await caught(mutant, REFUSALS[0], 5), /restore after a byte of .* succeeded/);
});

Deno.test("the backup suite catches a restore that accepts a .. path", async () => {
  const mutant = backupSuite(withRestore({ hashes: true, paths: false }));
  assert.match(await caught(mutant, REFUSALS[1], 3), /restore with a leading \.\. .* succeeded/);
});

Deno.test("the careless restore with both checks passes the refusal properties (the mutants fail for their missing check)", async () => {
  const results = await runSuites([backupSuite(withRestore({ hashes: true, paths: true }))], {
    property: "makes restore fail",
    runs: 3,
  });
  assert.equal(results.length, 2);
  for (const result of results) assert.ok(result.passed, result.report ?? "");
});

/** A machine whose every event is first passed through `broken`. */
function brokenMachine<M extends { readonly state: string; readonly ended: boolean }, E, A>(
  make: (times: BackupServerTimes, startMs: number) => M,
  broken: (machine: M, event: E) => A[],
) {
  return (times: BackupServerTimes, startMs: number) => {
    const machine = make(times, startMs);
    return {
      get state() {
        return machine.state;
      },
      get ended() {
        return machine.ended;
      },
      handle: (event: E) => broken(machine, event),
    };
  };
}

/** lanfree's backup server machine, with every event first passed through `broken`. */
function brokenServer(
  broken: (machine: BackupServerMachine, event: BackupServerEvent) => BackupServerAction[],
) {
  return brokenMachine((times, startMs) => new BackupServerMachine(times, startMs), broken);
}

Deno.test("the session machine suite catches a backup server that commits before the manifest is written", async () => {
  // The broken row: the end of data counts as the manifest's lines written too.
  const mutant = brokenServer((machine, event) =>
    event.type === "data-end"
      ? [
        ...machine.handle({ type: "manifest-written", atMs: event.atMs }),
        ...machine.handle(event),
      ]
      : machine.handle(event)
  );
  assert.match(
    await caught(sessionMachineSuite(mutant, "mutant"), "commits only"),
    /committed with/,
  );
});

Deno.test("the session machine suite catches a backup server that never times out a silent client", async () => {
  // The broken row: a tick only ever sends keepalives.
  const mutant = brokenServer((machine, event) =>
    event.type === "tick" ? [] : machine.handle(event)
  );
  assert.match(await caught(sessionMachineSuite(mutant, "mutant"), "commits only"), /silent/);
});

Deno.test("the pair suite catches a backup client that never times out a silent server", async () => {
  // The broken row: a tick only ever sends keepalives, however long the server was silent.
  const client = brokenMachine(
    (times, startMs) => new BackupClientMachine(times, startMs),
    (machine, event: BackupClientEvent): BackupClientAction[] => {
      const actions = machine.handle(event);
      return event.type === "tick" && actions.some((a) => a.type === "abort") ? [] : actions;
    },
  );
  const mutant = sessionPairSuite({
    client,
    server: (times, startMs) => new BackupServerMachine(times, startMs),
  }, "mutant");
  assert.match(await caught(mutant, "breaking, stalling"), /client did not fail for a silent peer/);
});

Deno.test("the pair suite catches a backup server that fails on the parent stream's late end while committing", async () => {
  // The broken row (the one the pair suite found): a late `parent-sent` in committing fails.
  const server = brokenServer((machine, event) =>
    event.type === "parent-sent" && machine.state === "committing"
      ? machine.handle({ type: "failure", atMs: event.atMs, reason: "no row" }).concat(
        machine.handle({ type: "commit-failed", atMs: event.atMs, reason: "no row" }),
      )
      : machine.handle(event)
  );
  const mutant = sessionPairSuite({
    client: (times, startMs) => new BackupClientMachine(times, startMs),
    server,
  }, "mutant");
  assert.match(await caught(mutant, "healthy link"), /no fault, yet/);
});

Deno.test("the restore server suite catches a server that streams an archive the snapshot does not use", async () => {
  // The broken row: `opened` takes any archive the agent may name (here one more).
  const mutant = brokenMachine(
    (times, startMs) => new RestoreServerMachine(times, startMs),
    (machine, event: RestoreServerEvent) =>
      machine.handle(
        event.type === "opened" ? { ...event, archives: [...event.archives, "elsewhere"] } : event,
      ),
  );
  assert.match(
    await caught(restoreServerMachineSuite(mutant, "mutant"), "streams each archive"),
    /streamed elsewhere, which the snapshot does not use/,
  );
});

/** lanfree's restore client machine, with every event first passed through `broken`. */
function brokenRestoreClient(
  broken: (machine: RestoreClientMachine, event: RestoreClientEvent) => RestoreClientAction[],
) {
  return brokenMachine((times, startMs) => new RestoreClientMachine(times, startMs), broken);
}

const restoreServer = (times: BackupServerTimes, startMs: number) =>
  new RestoreServerMachine(times, startMs);

Deno.test("the restore client suite catches an agent that writes a member it did not ask for", async () => {
  // The broken row: an archive's request counts one member more than the writer asked for.
  const mutant = brokenRestoreClient((machine, event) =>
    machine.handle(
      event.type === "archive-wanted" ? { ...event, members: event.members + 1 } : event,
    )
  );
  assert.match(
    await caught(restoreClientMachineSuite(mutant, "mutant"), "asks for and writes"),
    /wrote member \d of a\d, which was not asked for/,
  );
});

Deno.test("the restore pair suite catches an agent that never times out a silent server", async () => {
  // The broken row: a tick only ever sends keepalives, however long the server was silent.
  const client = brokenRestoreClient((machine, event) => {
    const actions = machine.handle(event);
    return event.type === "tick" && actions.some((a) => a.type === "abort") ? [] : actions;
  });
  const mutant = restorePairSuite({ client, server: restoreServer }, "mutant");
  assert.match(await caught(mutant, "breaking, stalling"), /client did not fail for a silent peer/);
});

Deno.test("the restore pair suite catches an agent that is done once its end request goes out, before the server is", async () => {
  // The broken row: the end request counts as answered (no wait for `restore-done`).
  let begun = "";
  const client = brokenRestoreClient((machine, event) => {
    if (event.type === "message" && event.message.type === "restore-begin") {
      begun = (event.message as { snapshot: string }).snapshot;
    }
    const actions = machine.handle(event);
    if (!actions.some((a) => a.type === "send-end")) return actions;
    const done = { type: "restore-done", snapshot: begun };
    return [...actions, ...machine.handle({ type: "message", atMs: event.atMs, message: done })];
  });
  const mutant = restorePairSuite({ client, server: restoreServer }, "mutant");
  assert.match(await caught(mutant, "healthy link"), /client is done while the server is not/);
});

/** The two mutants the single-machine suites once missed, as `brokenMachine` rows. */
const ignoresFailure = <E extends { type: string }, A>(machine: { handle(e: E): A[] }, event: E) =>
  event.type === "failure" ? [] : machine.handle(event);
const dropsSendFailed = <E, A extends { type: string }>(machine: { handle(e: E): A[] }, event: E) =>
  machine.handle(event).filter((action) => action.type !== "send-failed");

const backupClient = (times: BackupServerTimes, startMs: number) =>
  new BackupClientMachine(times, startMs);
const backupServer = (times: BackupServerTimes, startMs: number) =>
  new BackupServerMachine(times, startMs);

/** Each of the two mutants, through every suite that runs the machine it breaks. */
const FAILURE_MUTANTS: readonly { name: string; suite: Suite; property: string; says: RegExp }[] = [
  {
    name: "the session machine suite catches a backup server that ignores failure events",
    suite: sessionMachineSuite(brokenServer(ignoresFailure), "mutant"),
    property: "commits only",
    says: /a failure in \S+ gave no abort/,
  },
  {
    name: "the session machine suite catches a backup server that drops its send-failed",
    suite: sessionMachineSuite(brokenServer(dropsSendFailed), "mutant"),
    property: "commits only",
    says: /failed without send-failed/,
  },
  {
    name: "the pair suite catches a backup server that ignores failure events",
    suite: sessionPairSuite({ client: backupClient, server: brokenServer(ignoresFailure) }, "m"),
    property: "breaking, stalling",
    says: /the server gave no abort on a failure/,
  },
  {
    name: "the pair suite catches a backup client that ignores failure events",
    suite: sessionPairSuite({
      client: brokenMachine(backupClient, ignoresFailure<BackupClientEvent, BackupClientAction>),
      server: backupServer,
    }, "m"),
    property: "breaking, stalling",
    says: /the client gave no abort on a failure/,
  },
  {
    name: "the pair suite catches a backup client that drops its send-failed",
    suite: sessionPairSuite({
      client: brokenMachine(backupClient, dropsSendFailed<BackupClientEvent, BackupClientAction>),
      server: backupServer,
    }, "m"),
    property: "breaking, stalling",
    says: /the client failed without sending its `failed` report/,
  },
  {
    name: "the restore server suite catches a server that ignores failure events",
    suite: restoreServerMachineSuite(
      brokenMachine(restoreServer, ignoresFailure<RestoreServerEvent, RestoreServerAction>),
      "mutant",
    ),
    property: "streams each archive",
    says: /a failure in \S+ gave no failed/,
  },
  {
    name: "the restore client suite catches an agent that ignores failure events",
    suite: restoreClientMachineSuite(brokenRestoreClient(ignoresFailure), "mutant"),
    property: "asks for and writes",
    says: /a failure in \S+ gave no failed/,
  },
  {
    name: "the restore pair suite catches an agent that ignores failure events",
    suite: restorePairSuite(
      { client: brokenRestoreClient(ignoresFailure), server: restoreServer },
      "mutant",
    ),
    property: "breaking, stalling",
    says: /the client gave no failed on a failure/,
  },
];

for (const mutant of FAILURE_MUTANTS) {
  Deno.test(mutant.name, async () => {
    assert.match(await caught(mutant.suite, mutant.property), mutant.says);
  });
}
