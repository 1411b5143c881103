import { registerSuite } from "./_deno.ts";
import { stpSuite } from "./stp_suite.ts";
import { sharedArrayBufferRegions } from "../src/adapters/shm_region.ts";

registerSuite(stpSuite(sharedArrayBufferRegions));
