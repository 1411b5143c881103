import { registerSuite } from "./_deno.ts";
import { restorePairSuite } from "./restore_pair_suite.ts";
import { RestoreClientMachine } from "../src/core/session/restore_client_machine.ts";
import { RestoreServerMachine } from "../src/core/session/restore_server_machine.ts";

registerSuite(restorePairSuite({
  client: (times, startMs) => new RestoreClientMachine(times, startMs),
  server: (times, startMs) => new RestoreServerMachine(times, startMs),
}));
