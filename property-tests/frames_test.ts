import { registerSuite } from "./_deno.ts";
import { framesSuite } from "./frames_suite.ts";
import { lanfreeFrameCodecs } from "./frames_lanfree.ts";

for (const codec of lanfreeFrameCodecs()) registerSuite(framesSuite(codec));
