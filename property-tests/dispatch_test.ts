import { createTcpSockets } from "../src/adapters/tcp.ts";
import { createRouter, unavailableSockets } from "../src/core/dispatch/router.ts";
import { registerSuite } from "./_deno.ts";
import { descriptorSuite, socketsSuite } from "./dispatch_suite.ts";

registerSuite(descriptorSuite());

// The TCP implementation, reached through the router as every caller reaches it.
registerSuite(
  socketsSuite(() => ({
    sockets: createRouter({
      network: createTcpSockets({ ioTimeoutMs: 5_000 }),
      storage: unavailableSockets("storage", "not under test here"),
    }),
    kind: "network",
    anyAddress: { kind: "network", host: "127.0.0.1", port: 0 },
  })),
);
