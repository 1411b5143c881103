import { registerSuite } from "./_deno.ts";
import { retentionSuite } from "./retention_suite.ts";
import { applyKeepRules } from "../src/core/backup/retention.ts";

registerSuite(retentionSuite(applyKeepRules));
