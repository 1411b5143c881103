import { createTcpSockets } from "../src/adapters/tcp.ts";
import { createRouter, unavailableSockets } from "../src/core/dispatch/router.ts";
import assert from "node:assert/strict";
import type { Address, Sockets } from "../src/core/dispatch/sockets.ts";
import { failureReport } from "./_suite.ts";
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

/**
 * TCP through a wrapper that does what the kernel may do under load: hand a dynamic bind the
 * port released most recently. The model's "closed port" must stay closed all the same.
 */
function reusingReleasedPorts(inner: Sockets): Sockets {
  let released: Address | undefined;
  const boundTo = new Map<number, Address>();
  return {
    socket: (kind) => inner.socket(kind),
    listen: (fd, backlog) => inner.listen(fd, backlog),
    getsockname: (fd) => inner.getsockname(fd),
    accept: (fd) => inner.accept(fd),
    connect: (fd, address) => inner.connect(fd, address),
    send: (fd, bytes) => inner.send(fd, bytes),
    recv: (fd, into) => inner.recv(fd, into),
    async bind(fd, address) {
      const reuse = released;
      released = undefined;
      if (address.kind === "network" && address.port === 0 && reuse !== undefined) {
        try {
          await inner.bind(fd, reuse);
          boundTo.set(fd, reuse);
          return;
        } catch {
          // taken meanwhile: a dynamic port as asked
        }
      }
      await inner.bind(fd, address);
      boundTo.set(fd, await inner.getsockname(fd));
    },
    async close(fd) {
      await inner.close(fd);
      const address = boundTo.get(fd);
      boundTo.delete(fd);
      if (address !== undefined) released = address;
    },
  };
}

Deno.test("the closed-port address of the sockets suite stays closed when the kernel reuses a released port", async () => {
  const suite = socketsSuite(() => ({
    sockets: reusingReleasedPorts(createTcpSockets({ ioTimeoutMs: 5_000 })),
    kind: "network",
    anyAddress: { kind: "network", host: "127.0.0.1", port: 0 },
  }));
  const details = await suite.properties[0]!.check({ numRuns: 60, seed: 20261128 });
  assert.equal(failureReport(details), undefined);
});
