/**
 * `deno task backup`: for now, a real transfer of a source tree between two endpoints on
 * 127.0.0.1 through the dispatch layer, with every file's SHA-256 checked on arrival.
 *
 * What it does today: asks the router for a storage socket (the data path), falls back to the
 * network data path when storage is not available and says why, then sends each file as framed
 * records over TCP and verifies it on the receiving side. What it does not do yet: write a
 * repository (snapshots, restore, verify arrive with the backup issue). It writes nothing.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createHash } from "node:crypto";
import { createTcpSockets } from "../src/adapters/tcp.ts";
import { createRouter, unavailableSockets } from "../src/core/dispatch/router.ts";
import { SocketError } from "../src/core/dispatch/errors.ts";
import { formatAddress, type Sockets } from "../src/core/dispatch/sockets.ts";
import { readFrame, writeFrame } from "../src/core/wire/frame.ts";

const CHUNK_BYTES = 60 * 1024;
const FILES_MAX = 100_000;
const DEPTH_MAX = 64;
const USAGE = `usage: deno task backup [--source DIR] [--json] [--help]

Sends every file under DIR (default: fixtures/sample) from a client endpoint to a server
endpoint on 127.0.0.1 through lanfree's dispatch layer and checks each file's SHA-256.
Nothing is written: the repository, restore and verify are not built yet.`;

interface FileRecord {
  readonly path: string;
  readonly bytes: number;
  readonly sha256: string;
}

/** Lists regular files under `root`, depth-first, sorted, bounded in count and depth. */
async function listFiles(root: string, relative = "", depth = 0, out: string[] = []) {
  if (depth > DEPTH_MAX) throw new Error(`${root}/${relative}: deeper than ${DEPTH_MAX} levels`);
  const entries = [];
  for await (const entry of Deno.readDir(`${root}/${relative}`)) entries.push(entry);
  entries.sort((a, b) => (a.name < b.name ? -1 : 1));
  for (const entry of entries) {
    const path = relative === "" ? entry.name : `${relative}/${entry.name}`;
    if (entry.isDirectory) await listFiles(root, path, depth + 1, out);
    else if (entry.isFile) out.push(path);
    if (out.length > FILES_MAX) throw new Error(`${root}: more than ${FILES_MAX} files`);
  }
  return out;
}

/** Client side: each file is a header frame (JSON), its content frames, and an empty frame. */
async function sendTree(sockets: Sockets, fd: number, root: string, paths: string[]) {
  const sent: FileRecord[] = [];
  const encoder = new TextEncoder();
  for (const path of paths) {
    const file = await Deno.open(`${root}/${path}`);
    const hash = createHash("sha256");
    let bytes = 0;
    await writeFrame(sockets, fd, encoder.encode(JSON.stringify({ path })));
    const chunk = new Uint8Array(CHUNK_BYTES);
    for (;;) {
      const got = await file.read(chunk);
      if (got === null) break;
      hash.update(chunk.subarray(0, got));
      bytes += got;
      await writeFrame(sockets, fd, chunk.subarray(0, got));
    }
    file.close();
    await writeFrame(sockets, fd, new Uint8Array(0));
    sent.push({ path, bytes, sha256: hash.digest("hex") });
  }
  return sent;
}

/** Server side: reads records until the client closes. */
async function receiveTree(sockets: Sockets, fd: number) {
  const received: FileRecord[] = [];
  const decoder = new TextDecoder();
  for (let files = 0; files <= FILES_MAX; files++) {
    const header = await readFrame(sockets, fd);
    if (header === null) return received;
    const { path } = JSON.parse(decoder.decode(header)) as { path: string };
    const hash = createHash("sha256");
    let bytes = 0;
    for (;;) {
      const chunk = await readFrame(sockets, fd);
      if (chunk === null) throw new Error(`stream ended inside ${path}`);
      if (chunk.length === 0) break;
      hash.update(chunk);
      bytes += chunk.length;
    }
    received.push({ path, bytes, sha256: hash.digest("hex") });
  }
  throw new Error(`more than ${FILES_MAX} files received`);
}

/** Tries the storage data path; returns why it is not available, or undefined. */
async function storageUnavailableReason(sockets: Sockets): Promise<string | undefined> {
  try {
    const fd = await sockets.socket("storage");
    await sockets.close(fd);
    return undefined;
  } catch (error) {
    if (error instanceof SocketError) return error.message;
    throw error;
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      source: { type: "string", default: new URL("../fixtures/sample", import.meta.url).pathname },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const root = values.source.replace(/\/+$/, "");
  const paths = await listFiles(root);
  const sockets = createRouter({
    network: createTcpSockets({ ioTimeoutMs: 30_000 }),
    storage: unavailableSockets("storage", "the storage transport has not landed yet"),
  });
  const fallback = await storageUnavailableReason(sockets);

  const listener = await sockets.socket("network");
  await sockets.bind(listener, { kind: "network", host: "127.0.0.1", port: 0 });
  await sockets.listen(listener, 1);
  const serverAddress = await sockets.getsockname(listener);
  const client = await sockets.socket("network");
  const started = performance.now();
  const [server] = await Promise.all([
    sockets.accept(listener),
    sockets.connect(client, serverAddress),
  ]);
  const clientAddress = await sockets.getsockname(client);
  const [sent, received] = await Promise.all([
    sendTree(sockets, client, root, paths).finally(() => sockets.close(client)),
    receiveTree(sockets, server),
  ]);
  const seconds = (performance.now() - started) / 1000;
  await sockets.close(server);
  await sockets.close(listener);

  const mismatched = sent.filter((file, i) => JSON.stringify(file) !== JSON.stringify(received[i]));
  const totalBytes = received.reduce((sum, file) => sum + file.bytes, 0);
  const summary = {
    source: root,
    files: received.length,
    bytes: totalBytes,
    dataChannel: "network",
    from: formatAddress(clientAddress),
    to: formatAddress(serverAddress),
    storageFallbackReason: fallback ?? null,
    verified: mismatched.length === 0 && sent.length === received.length,
    seconds,
    repositoryWritten: false,
    notYet: "the repository (snapshots), restore and verify are not built yet; nothing was written",
  };
  if (values.json) {
    console.log(JSON.stringify({ ...summary, received }));
  } else {
    console.log(`lanfree: sent ${summary.files} files (${totalBytes} bytes) from ${root}`);
    console.log(`  data path: network, ${summary.from} -> ${summary.to}`);
    if (fallback !== undefined) console.log(`  storage path not used: ${fallback}`);
    for (const file of received) {
      console.log(
        `  ${file.sha256.slice(0, 16)}  ${String(file.bytes).padStart(10)}  ${file.path}`,
      );
    }
    console.log(`  every SHA-256 matched: ${summary.verified} (${seconds.toFixed(3)} s)`);
    console.log(`  not yet: ${summary.notYet}`);
  }
  return summary.verified ? 0 : 1;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`backup: ${message}`);
    Deno.exit(1);
  }
}
