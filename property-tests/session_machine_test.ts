import { registerSuite } from "./_deno.ts";
import { sessionMachineSuite } from "./session_machine_suite.ts";
import { BackupServerMachine } from "../src/core/session/backup_server_machine.ts";

registerSuite(sessionMachineSuite((times, startMs) => new BackupServerMachine(times, startMs)));
