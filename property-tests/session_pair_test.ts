import { registerSuite } from "./_deno.ts";
import { sessionPairSuite } from "./session_pair_suite.ts";
import { BackupClientMachine } from "../src/core/session/backup_client_machine.ts";
import { BackupServerMachine } from "../src/core/session/backup_server_machine.ts";

registerSuite(sessionPairSuite({
  client: (times, startMs) => new BackupClientMachine(times, startMs),
  server: (times, startMs) => new BackupServerMachine(times, startMs),
}));
