import { decodeMessage, encodeMessage } from "../src/core/wire/messages.ts";
import { registerSuite } from "./_deno.ts";
import { wireSuite } from "./wire_suite.ts";

registerSuite(wireSuite({ encode: encodeMessage, decode: decodeMessage }));
