import { registerSuite } from "./_deno.ts";
import { restoreClientMachineSuite } from "./restore_client_machine_suite.ts";
import { RestoreClientMachine } from "../src/core/session/restore_client_machine.ts";

registerSuite(
  restoreClientMachineSuite((times, startMs) => new RestoreClientMachine(times, startMs)),
);
