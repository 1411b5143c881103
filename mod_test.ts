import assert from "node:assert/strict";
import * as lanfree from "./mod.ts";
import * as conformance from "./conformance.ts";
import * as internal from "./internal.ts";

const has = (module: object, name: string): boolean => name in module;

Deno.test("mod.ts exports every suite, backupSuite included, and the app surfaces a user needs", () => {
  const wanted = [
    "descriptorSuite",
    "socketsSuite",
    "wireSuite",
    "stpSuite",
    "handshakeSuite",
    "backupSuite",
    "framesSuite",
    "runSuites",
    "edgeSuites",
    "createRouter",
    "createHandshake",
    "planRegion",
    "formatRegion",
    "attachRegion",
    "createControlApp",
    "JobQueue",
    "runBackupJob",
    "runLocalBackup",
    "restoreSnapshot",
    "verifyRepository",
    "openRepository",
    "BackupError",
    "runAgent",
    "runAgentBackup",
    "runAgentRestore",
    "validateAgent",
    "loadAgentKey",
    "jobsPort",
    "suitesPort",
  ];
  assert.deepEqual(wanted.filter((name) => !has(lanfree, name)), []);
});

Deno.test("internals stay out of mod.ts and live in ./internal", () => {
  const internals = [
    "SocketTable",
    "TRANSITIONS",
    "checkCall",
    "nextState",
    "FS_SERVER_TABLE",
    "FS_CLIENT_TABLE",
    "DB_SERVER_TABLE",
    "DB_CLIENT_TABLE",
    "isModelBasedReport",
    "codeOfDenoError",
  ];
  assert.deepEqual(internals.filter((name) => has(lanfree, name)), []);
  assert.deepEqual(internals.filter((name) => !has(internal, name)), []);
  const neither = [
    "Session",
    "defineProperty",
    "messageArbitrary",
    "MessageSchema",
    "manifestSchema",
  ];
  assert.deepEqual(neither.filter((name) => has(lanfree, name) || has(internal, name)), []);
});

Deno.test("./conformance holds the suites and runner, and mod.ts re-exports all of it", () => {
  const suites = [
    "descriptorSuite",
    "socketsSuite",
    "wireSuite",
    "stpSuite",
    "handshakeSuite",
    "framesSuite",
  ];
  assert.deepEqual([...suites, "backupSuite", "runSuites"].filter((n) => !has(conformance, n)), []);
  assert.deepEqual(Object.keys(conformance).filter((name) => !has(lanfree, name)), []);
});
