import { registerSuite } from "./_deno.ts";
import { retentionSuite } from "./retention_suite.ts";
import { prunePlanSuite } from "./prune_plan_suite.ts";
import { applyKeepRules } from "../src/core/backup/retention.ts";
import { moveReferences, planPrune } from "../src/core/backup/prune_plan.ts";

registerSuite(retentionSuite(applyKeepRules));
registerSuite(prunePlanSuite({ plan: planPrune, move: moveReferences }));
