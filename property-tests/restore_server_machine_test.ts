import { registerSuite } from "./_deno.ts";
import { restoreServerMachineSuite } from "./restore_server_machine_suite.ts";
import { RestoreServerMachine } from "../src/core/session/restore_server_machine.ts";

registerSuite(
  restoreServerMachineSuite((times, startMs) => new RestoreServerMachine(times, startMs)),
);
