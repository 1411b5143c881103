/**
 * Port helpers for running both sides of a handshake on one machine.
 *
 * @module
 */

/**
 * Finds a well-known port whose successor is free too (the file-system flow uses WKP and
 * WKP+1) on `host` (default 127.0.0.1). Another process could take it before use; callers treat
 * EADDRINUSE as a reason to pick again.
 *
 * @param host the address the ports are for
 * @returns the port
 */
export function freePortPair(host = "127.0.0.1"): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = Deno.listen({ hostname: host, port: 0 });
    const port = (first.addr as Deno.NetAddr).port;
    try {
      if (port >= 65535) continue;
      Deno.listen({ hostname: host, port: port + 1 }).close();
      return port;
    } catch {
      // WKP+1 taken: try another.
    } finally {
      first.close();
    }
  }
  throw new Error(`no free pair of adjacent ports on ${host}`);
}
