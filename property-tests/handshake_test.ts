import { createHandshake } from "../src/core/handshake/mod.ts";
import { registerSuite } from "./_deno.ts";
import { handshakeSuite } from "./handshake_suite.ts";

registerSuite(handshakeSuite(createHandshake));
