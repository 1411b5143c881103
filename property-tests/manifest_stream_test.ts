import { registerSuite } from "./_deno.ts";
import { manifestStreamSuite } from "./manifest_stream_suite.ts";

registerSuite(manifestStreamSuite());
