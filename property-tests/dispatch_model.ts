/**
 * Model-based conformance of a `Sockets` implementation: random call sequences (`fc.commands`)
 * run against the implementation and against a small model of legal socket states; every
 * call's outcome (value or error code) must be what the model says.
 *
 * The model is deliberately simpler than any implementation: a socket is created, bound,
 * listening, connected or failed; a connection is two ends with the bytes in flight to each.
 * Calls whose outcome depends on timing the model does not know (a recv with nothing to read, a
 * send to a peer that is gone) are never generated.
 *
 * @module
 */

import fc from "fast-check";
import { kindOfDescriptor, type SocketKind } from "../src/core/dispatch/descriptor.ts";
import { SocketError, type SocketErrorCode } from "../src/core/dispatch/errors.ts";
import type { Address, Sockets } from "../src/core/dispatch/sockets.ts";
import { defineProperty, type Suite } from "./_suite.ts";

/** What the suite needs from an implementation. */
export interface SocketsUnderTest {
  /** The implementation. */
  readonly sockets: Sockets;
  /** The kind of socket it opens. */
  readonly kind: SocketKind;
  /** An address with port 0, to bind with a dynamic port. */
  readonly anyAddress: Address;
  /** Releases the implementation after every descriptor was closed. */
  dispose?(): Promise<void> | void;
}

type Phase = "created" | "bound" | "listening" | "connected" | "failed";

interface End {
  fd: number | undefined;
  phase: Phase;
  failedCode?: SocketErrorCode;
  local?: Address;
  backlog: number;
  queue: End[];
  peer?: End;
  inbox: number[];
  closed: boolean;
  /** The peer went away in a way whose timing the model does not know: only close is generated. */
  doomed: boolean;
}

interface Model {
  live: End[];
  closedFds: number[];
  deadAddress: Address;
}

interface Real {
  readonly sockets: Sockets;
  readonly kind: SocketKind;
  readonly anyAddress: Address;
}

const LIVE_MAX = 10;
const INBOX_BYTES_MAX = 48 * 1024;

function newEnd(fd: number | undefined, phase: Phase): End {
  return { fd, phase, backlog: 0, queue: [], inbox: [], closed: false, doomed: false };
}

async function outcome<T>(promise: Promise<T>): Promise<{ value: T } | { code: SocketErrorCode }> {
  try {
    return { value: await promise };
  } catch (error) {
    if (error instanceof SocketError) return { code: error.code };
    throw new Error(`call rejected with something other than a SocketError: ${String(error)}`);
  }
}

function expectCode(
  got: { code: SocketErrorCode } | { value: unknown },
  code: SocketErrorCode,
  what: string,
) {
  if (!("code" in got) || got.code !== code) {
    throw new Error(`${what}: expected ${code}, got ${JSON.stringify(got)}`);
  }
}

function expectOk<T>(got: { code: SocketErrorCode } | { value: T }, what: string): T {
  if ("code" in got) throw new Error(`${what}: expected success, got ${got.code}`);
  return got.value;
}

/** The code a call on a non-connected, non-failed socket must give for send/recv. */
function pick(model: Model, index: number, usable: (end: End) => boolean): End | undefined {
  const candidates = model.live.filter((end) => usable(end));
  return candidates.length === 0 ? undefined : candidates[index % candidates.length];
}

const notDoomed = (end: End) => !end.doomed;

class OpenCommand implements fc.AsyncCommand<Model, Real> {
  check = (model: Readonly<Model>) => model.live.length < LIVE_MAX;
  async run(model: Model, real: Real) {
    const fd = expectOk(await outcome(real.sockets.socket(real.kind)), "socket");
    if (kindOfDescriptor(fd) !== real.kind) {
      throw new Error(`socket gave ${fd}, not a ${real.kind} descriptor`);
    }
    if (model.live.some((end) => end.fd === fd)) {
      throw new Error(`socket gave live descriptor ${fd}`);
    }
    model.live.push(newEnd(fd, "created"));
  }
  toString = () => "socket()";
}

class BindCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly index: number, readonly taken: boolean) {}
  check = (model: Readonly<Model>) =>
    model.live.some(notDoomed) && (!this.taken || model.live.some((end) => isBoundish(end)));
  async run(model: Model, real: Real) {
    const end = pick(model, this.index, notDoomed)!;
    const owner = model.live.find(isBoundish);
    const address = this.taken && owner?.local !== undefined ? owner.local : real.anyAddress;
    const got = await outcome(real.sockets.bind(end.fd!, address));
    if (end.phase === "failed") return expectCode(got, end.failedCode!, "bind on failed socket");
    if (end.phase !== "created") return expectCode(got, "EINVAL", `bind in ${end.phase}`);
    if (address !== real.anyAddress) {
      return expectCode(got, "EADDRINUSE", "bind to a taken address");
    }
    expectOk(got, "bind");
    end.phase = "bound";
    end.local = expectOk(
      await outcome(real.sockets.getsockname(end.fd!)),
      "getsockname after bind",
    );
    if (end.local.port === 0) throw new Error("bind to port 0 must pick a dynamic port");
  }
  toString = () => `bind(#${this.index}, ${this.taken ? "taken" : "any"})`;
}

function isBoundish(end: End): boolean {
  return (end.phase === "bound" || end.phase === "listening") && end.local !== undefined;
}

class ListenCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly index: number, readonly backlog: number, readonly legal: boolean) {}
  #usable = (end: End) => notDoomed(end) && (end.phase === "bound") === this.legal;
  check = (model: Readonly<Model>) => model.live.some(this.#usable);
  async run(model: Model, real: Real) {
    const end = pick(model, this.index, this.#usable)!;
    const got = await outcome(real.sockets.listen(end.fd!, this.backlog));
    if (end.phase === "failed") return expectCode(got, end.failedCode!, "listen on failed socket");
    if (end.phase !== "bound") return expectCode(got, "EINVAL", `listen in ${end.phase}`);
    expectOk(got, "listen");
    end.phase = "listening";
    end.backlog = this.backlog;
  }
  toString = () => `listen(#${this.index}, ${this.backlog}${this.legal ? "" : ", illegal"})`;
}

class GetsocknameCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly index: number) {}
  check = (model: Readonly<Model>) =>
    model.live.some((end) => notDoomed(end) && end.phase !== "failed");
  async run(model: Model, real: Real) {
    const end = pick(model, this.index, (e) => notDoomed(e) && e.phase !== "failed")!;
    const got = await outcome(real.sockets.getsockname(end.fd!));
    if (end.phase === "created") return expectCode(got, "EINVAL", "getsockname before bind");
    const address = expectOk(got, "getsockname");
    if (address.kind !== real.kind) throw new Error(`getsockname gave a ${address.kind} address`);
    if (end.local !== undefined && JSON.stringify(address) !== JSON.stringify(end.local)) {
      throw new Error(
        `getsockname gave ${JSON.stringify(address)}, bound ${JSON.stringify(end.local)}`,
      );
    }
  }
  toString = () => `getsockname(#${this.index})`;
}

class ConnectCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly index: number, readonly listenerIndex: number, readonly refused: boolean) {}
  check = (model: Readonly<Model>) =>
    model.live.some(notDoomed) &&
    (this.refused ||
      model.live.some((end) => end.phase === "listening" && end.queue.length < end.backlog));
  async run(model: Model, real: Real) {
    const end = pick(model, this.index, notDoomed)!;
    const listener = pick(
      model,
      this.listenerIndex,
      (e) => e.phase === "listening" && e.queue.length < e.backlog,
    );
    const address = this.refused || listener === undefined ? model.deadAddress : listener.local!;
    const got = await outcome(real.sockets.connect(end.fd!, address));
    if (end.phase === "failed") return expectCode(got, end.failedCode!, "connect on failed socket");
    if (end.phase === "connected") return expectCode(got, "EISCONN", "connect when connected");
    if (end.phase === "listening") return expectCode(got, "EINVAL", "connect when listening");
    if (address === model.deadAddress) {
      expectCode(got, "ECONNREFUSED", "connect to a closed port");
      end.phase = "failed";
      end.failedCode = "ECONNREFUSED";
      return;
    }
    expectOk(got, "connect");
    const serverEnd = newEnd(undefined, "connected");
    end.phase = "connected";
    end.local = undefined;
    end.peer = serverEnd;
    serverEnd.peer = end;
    listener!.queue.push(serverEnd);
  }
  toString = () =>
    `connect(#${this.index}, ${this.refused ? "closed port" : `listener #${this.listenerIndex}`})`;
}

class AcceptCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly index: number, readonly onListener: boolean) {}
  check = (model: Readonly<Model>) =>
    this.onListener
      ? model.live.some((end) => end.phase === "listening" && end.queue.length > 0)
      : model.live.some((end) =>
        notDoomed(end) && end.phase !== "listening" && end.phase !== "failed"
      );
  async run(model: Model, real: Real) {
    if (!this.onListener) {
      const end = pick(
        model,
        this.index,
        (e) => notDoomed(e) && e.phase !== "listening" && e.phase !== "failed",
      )!;
      return expectCode(
        await outcome(real.sockets.accept(end.fd!)),
        "EINVAL",
        `accept in ${end.phase}`,
      );
    }
    const listener = pick(model, this.index, (e) => e.phase === "listening" && e.queue.length > 0)!;
    const fd = expectOk(await outcome(real.sockets.accept(listener.fd!)), "accept");
    if (kindOfDescriptor(fd) !== real.kind) throw new Error(`accept gave ${fd}`);
    if (model.live.some((end) => end.fd === fd)) {
      throw new Error(`accept gave live descriptor ${fd}`);
    }
    const serverEnd = listener.queue.shift()!;
    serverEnd.fd = fd;
    model.live.push(serverEnd);
  }
  toString = () => `accept(#${this.index}${this.onListener ? "" : ", not listening"})`;
}

class SendCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly index: number, readonly bytes: Uint8Array, readonly legal: boolean) {}
  check = (model: Readonly<Model>) => model.live.some((end) => this.#sendable(end));
  #sendable(end: End): boolean {
    if (end.doomed || (end.phase === "connected") !== this.legal) return false;
    if (end.phase !== "connected") return true;
    return !end.peer!.closed && end.peer!.inbox.length + this.bytes.length <= INBOX_BYTES_MAX;
  }
  async run(model: Model, real: Real) {
    const end = pick(model, this.index, (e) => this.#sendable(e))!;
    const got = await outcome(real.sockets.send(end.fd!, this.bytes));
    if (end.phase === "failed") return expectCode(got, end.failedCode!, "send on failed socket");
    if (end.phase !== "connected") return expectCode(got, "ENOTCONN", `send in ${end.phase}`);
    expectOk(got, "send");
    end.peer!.inbox.push(...this.bytes);
  }
  toString = () => `send(#${this.index}, ${this.bytes.length} bytes)`;
}

class RecvCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly index: number, readonly maxBytes: number, readonly legal: boolean) {}
  #usable = (end: End) => recvable(end) && (end.phase === "connected") === this.legal;
  check = (model: Readonly<Model>) => model.live.some(this.#usable);
  async run(model: Model, real: Real) {
    const end = pick(model, this.index, this.#usable)!;
    const into = new Uint8Array(this.maxBytes);
    const got = await outcome(real.sockets.recv(end.fd!, into));
    if (end.phase === "failed") return expectCode(got, end.failedCode!, "recv on failed socket");
    if (end.phase !== "connected") return expectCode(got, "ENOTCONN", `recv in ${end.phase}`);
    const count = expectOk(got, "recv");
    if (end.inbox.length === 0) {
      if (count !== null) {
        throw new Error(`recv after the peer closed gave ${count} bytes, not end of stream`);
      }
      return;
    }
    if (count === null || count < 1 || count > Math.min(this.maxBytes, end.inbox.length)) {
      throw new Error(`recv gave ${count} with ${end.inbox.length} bytes in flight`);
    }
    const expected = end.inbox.splice(0, count);
    for (let i = 0; i < count; i++) {
      if (into[i] !== expected[i]) {
        throw new Error(`recv byte ${i} is ${into[i]}, sent ${expected[i]}`);
      }
    }
  }
  toString = () => `recv(#${this.index}, ${this.maxBytes})`;
}

/** Recv is generated only when its outcome does not depend on timing. */
function recvable(end: End): boolean {
  if (end.doomed) return false;
  if (end.phase !== "connected") return true;
  return end.inbox.length > 0 || end.peer!.closed;
}

class CloseCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly index: number) {}
  check = (model: Readonly<Model>) => model.live.length > 0;
  async run(model: Model, real: Real) {
    const end = model.live[this.index % model.live.length]!;
    expectOk(await outcome(real.sockets.close(end.fd!)), "close");
    closeEnd(model, end);
  }
  toString = () => `close(#${this.index})`;
}

function closeEnd(model: Model, end: End): void {
  model.live.splice(model.live.indexOf(end), 1);
  model.closedFds.push(end.fd!);
  end.closed = true;
  // Unread bytes at close may reset the peer (TCP does): the model stops predicting it.
  if (end.peer !== undefined && end.inbox.length > 0) end.peer.doomed = true;
  for (const queued of end.queue) {
    queued.closed = true;
    queued.peer!.doomed = true;
  }
}

class UseClosedCommand implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly index: number,
    readonly call: "send" | "recv" | "close" | "listen" | "getsockname",
  ) {}
  check = (model: Readonly<Model>) => model.closedFds.length > 0;
  async run(model: Model, real: Real) {
    const fd = model.closedFds[this.index % model.closedFds.length]!;
    if (model.live.some((end) => end.fd === fd)) return; // reused after wrap: not stale any more
    const calls = {
      send: () => real.sockets.send(fd, new Uint8Array(1)),
      recv: () => real.sockets.recv(fd, new Uint8Array(1)),
      close: () => real.sockets.close(fd),
      listen: () => real.sockets.listen(fd, 1),
      getsockname: () => real.sockets.getsockname(fd),
    };
    expectCode(await outcome<unknown>(calls[this.call]()), "EBADF", `${this.call} on closed ${fd}`);
  }
  toString = () => `${this.call}(closed #${this.index})`;
}

/** socket+bind+listen, socket+connect, accept: a connected pair in one step (data commands need one). */
class PairCommand implements fc.AsyncCommand<Model, Real> {
  constructor(readonly backlog: number) {}
  check = (model: Readonly<Model>) => model.live.length < LIVE_MAX;
  async run(model: Model, real: Real) {
    const listener = newEnd(
      expectOk(await outcome(real.sockets.socket(real.kind)), "socket"),
      "created",
    );
    model.live.push(listener);
    expectOk(await outcome(real.sockets.bind(listener.fd!, real.anyAddress)), "bind");
    listener.local = expectOk(await outcome(real.sockets.getsockname(listener.fd!)), "getsockname");
    expectOk(await outcome(real.sockets.listen(listener.fd!, this.backlog)), "listen");
    Object.assign(listener, { phase: "listening", backlog: this.backlog });
    const client = newEnd(
      expectOk(await outcome(real.sockets.socket(real.kind)), "socket"),
      "created",
    );
    model.live.push(client);
    expectOk(await outcome(real.sockets.connect(client.fd!, listener.local)), "connect");
    const accepted = expectOk(await outcome(real.sockets.accept(listener.fd!)), "accept");
    if (model.live.some((end) => end.fd === accepted)) {
      throw new Error(`accept gave live ${accepted}`);
    }
    const server = newEnd(accepted, "connected");
    Object.assign(client, { phase: "connected", peer: server });
    server.peer = client;
    model.live.push(server);
  }
  toString = () => `pair(backlog ${this.backlog})`;
}

const payloadArbitrary = fc.uint8Array({ minLength: 1, maxLength: 4096 });
const recvBytesArbitrary = fc.integer({ min: 1, max: 8192 });

const commandArbitraries = [
  fc.integer({ min: 1, max: 4 }).map((backlog) => new PairCommand(backlog)),
  fc.constant(new OpenCommand()),
  fc.constant(new OpenCommand()),
  fc.tuple(fc.nat(), fc.boolean()).map(([i, taken]) => new BindCommand(i, taken)),
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 4 }), fc.boolean()).map(([i, b, l]) =>
    new ListenCommand(i, b, l)
  ),
  fc.nat().map((i) => new GetsocknameCommand(i)),
  fc.tuple(fc.nat(), fc.nat(), fc.boolean()).map(([i, l, r]) => new ConnectCommand(i, l, r)),
  fc.tuple(fc.nat(), fc.nat()).map(([i, l]) => new ConnectCommand(i, l, false)),
  fc.tuple(fc.nat(), fc.boolean()).map(([i, on]) => new AcceptCommand(i, on)),
  fc.nat().map((i) => new AcceptCommand(i, true)),
  fc.tuple(fc.nat(), payloadArbitrary, fc.boolean()).map(([i, b, l]) => new SendCommand(i, b, l)),
  fc.tuple(fc.nat(), payloadArbitrary).map(([i, b]) => new SendCommand(i, b, true)),
  fc.tuple(fc.nat(), recvBytesArbitrary, fc.boolean()).map(([i, m, l]) => new RecvCommand(i, m, l)),
  fc.tuple(fc.nat(), recvBytesArbitrary).map(([i, m]) => new RecvCommand(i, m, true)),
  fc.tuple(fc.nat(), recvBytesArbitrary).map(([i, m]) => new RecvCommand(i, m, true)),
  fc.nat().map((i) => new CloseCommand(i)),
  fc.tuple(
    fc.nat(),
    fc.constantFrom("send", "recv", "close", "listen", "getsockname") as fc.Arbitrary<
      "send" | "recv" | "close" | "listen" | "getsockname"
    >,
  ).map(([i, c]) => new UseClosedCommand(i, c)),
];

/**
 * An address nobody listens on and nobody can take while the run lasts: the local port of a
 * connection the run holds open (its listener is closed at once). A port that was only bound and
 * closed could be handed to the next dynamic bind, the run's own or another process's, and a
 * connect meant to be refused would then succeed.
 */
async function closedAddressOf(
  real: Real,
): Promise<{ address: Address; release(): Promise<void> }> {
  const sockets = real.sockets;
  const listener = await sockets.socket(real.kind);
  await sockets.bind(listener, real.anyAddress);
  await sockets.listen(listener, 1);
  const client = await sockets.socket(real.kind);
  await sockets.connect(client, await sockets.getsockname(listener));
  const server = await sockets.accept(listener);
  const address = await sockets.getsockname(client);
  await sockets.close(listener);
  return {
    address,
    release: async () => {
      await sockets.close(client).catch(() => {});
      await sockets.close(server).catch(() => {});
    },
  };
}

/**
 * The model-based suite over any `Sockets` implementation of one kind.
 *
 * @param create builds a fresh implementation for each run
 * @returns the suite
 */
export function socketsSuite(create: () => Promise<SocketsUnderTest> | SocketsUnderTest): Suite {
  return {
    name: "dispatch/sockets",
    properties: [
      defineProperty(
        "random call sequences give exactly the outcomes the socket-state model predicts",
        { numRuns: 150 },
        () =>
          fc.asyncProperty(
            fc.commands(commandArbitraries, { maxCommands: 60, size: "max" }),
            async (commands) => {
              const underTest = await create();
              const real: Real = underTest;
              const closed = await closedAddressOf(real);
              const model: Model = { live: [], closedFds: [], deadAddress: closed.address };
              try {
                await fc.asyncModelRun(() => ({ model, real }), commands);
              } finally {
                for (const end of [...model.live]) {
                  await real.sockets.close(end.fd!).catch(() => {});
                }
                await closed.release();
                await underTest.dispose?.();
              }
            },
          ),
      ),
    ],
  };
}
