/**
 * The crossing of two jobs' connections at the agent's one well-known port, made deterministic:
 * the agent (the file-system flow's accepting side) pairs its control and error connections by
 * accept order, so connections arriving control-A, control-B, error-A give it B's control
 * connection as A's error connection. Today's behaviour, pinned: its step 126 catches the
 * mix-up (B's first frame is not A's descriptor echo), the handshake fails with a typed EPROTO
 * at step 126 and establishes nothing, so no job's data is ever routed to another. The server's
 * bounded retry that recovers the job afterwards is pinned in `agent_job_test.ts` ("a job channel
 * the agent's handshake failed on after the server's succeeded … is set up again").
 */
import assert from "node:assert/strict";
import { createTcpSockets } from "../../adapters/tcp.ts";
import { decodeFrameHeader, encodeFrame, FRAME_HEADER_BYTES } from "../../core/wire/frame.ts";
import { decodeMessage, encodeMessage, wellKnownString } from "../../core/wire/messages.ts";
import type { Message } from "../../core/wire/messages.ts";
import { runHandshake } from "./channels.ts";
import { freePortPair } from "./ports.ts";

/** One framed control message, as a server's handshake sends it. */
function framed(message: Message): Uint8Array {
  const frame = encodeFrame(encodeMessage(message));
  if (!frame.ok) throw new Error(`could not frame ${message.type}`);
  return frame.value;
}

async function readExactly(conn: Deno.Conn, into: Uint8Array): Promise<void> {
  for (let filled = 0; filled < into.length;) {
    const n = await conn.read(into.subarray(filled));
    if (n === null) throw new Error(`the agent closed after ${filled} of ${into.length} bytes`);
    filled += n;
  }
}

async function readMessage(conn: Deno.Conn): Promise<Message> {
  const header = new Uint8Array(FRAME_HEADER_BYTES);
  await readExactly(conn, header);
  const length = decodeFrameHeader(header);
  if (!length.ok) throw new Error(`bad frame header from the agent`);
  const payload = new Uint8Array(length.value);
  await readExactly(conn, payload);
  const message = decodeMessage(payload);
  if (!message.ok) throw new Error(`bad message from the agent`);
  return message.value;
}

Deno.test("two jobs' connections arriving control-A, control-B, error-A cross at the agent, and its step 126 refuses the pair", async () => {
  const port = freePortPair();
  const sockets = createTcpSockets({ ioTimeoutMs: 10_000 });
  let listening = () => {};
  const ready = new Promise<void>((resolve) => (listening = resolve));
  const agent = runHandshake(
    {
      role: "fs-client",
      kind: "network",
      config: { wellKnownPort: port, localHost: "127.0.0.1", handshakeTimeoutMs: 10_000 },
    },
    sockets,
    undefined,
    () => listening(),
  );
  await ready;
  const opened: Deno.Conn[] = [];
  try {
    const connect = async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      opened.push(conn);
      return conn;
    };
    // Server A, steps 82-90: control connection, the well-known string, the agent's descriptor.
    const controlA = await connect();
    await controlA.write(framed({ type: "wellKnown", bytes: wellKnownString() }));
    const descriptor = await readMessage(controlA);
    assert.equal(descriptor.type, "descriptor");
    // Server B's control connection arrives before A's error connection (the agent is at 124).
    const controlB = await connect();
    await controlB.write(framed({ type: "wellKnown", bytes: wellKnownString() }));
    // Server A, steps 96-100: error connection, echoing the descriptor it was given.
    const errorA = await connect();
    if (descriptor.type === "descriptor") {
      await errorA.write(framed({ type: "descriptor", fd: descriptor.fd }));
    }
    const outcome = await agent;
    assert.equal(outcome.status, "failed", "the crossed pair is never established");
    if (outcome.status !== "failed") return;
    assert.equal(outcome.reason.code, "EPROTO");
    assert.equal(outcome.reason.step, "126");
    assert.match(outcome.reason.message, /wellKnown/);
  } finally {
    for (const conn of opened) {
      try {
        conn.close();
      } catch { /* the agent closed it first */ }
    }
  }
});
