/**
 * One typed message layer between a supervisor and its hosts, whether a host is a Worker of this
 * process or a subprocess: each host has a `type`-tagged union of messages in each direction,
 * the supervisor waits with `next(type, timeoutMs)` (or a list of types), stream messages such
 * as progress go to `on(type, handler)`, and a host that crashes (a Worker's uncaught error, a
 * process that exits) rejects every wait with a {@link HostCrashedError} instead of leaving it
 * hanging. The host side is the mirror image ({@link hostSide}): it works unchanged in a Worker
 * (`postMessage`) and in a process (JSON lines on stdin and stdout).
 *
 * @module
 */

/** A message of a host protocol: any object with a `type` tag. */
export interface HostMessage {
  /** What the message is. */
  readonly type: string;
}

/** The member of a message union `M` whose tag is `T`. */
export type MessageOf<M extends HostMessage, T extends M["type"]> = Extract<M, { type: T }>;

/** A host ended (crashed, exited, was terminated) while something still waited for it. */
export class HostCrashedError extends Error {
  /**
   * Makes the error.
   *
   * @param host the host's name
   * @param reason what ended it, with the facts (the error, the exit code)
   */
  constructor(readonly host: string, readonly reason: string) {
    super(`${host} ended: ${reason}`);
    this.name = "HostCrashedError";
  }
}

/** A host sent no message of the awaited type in time. */
export class HostTimeoutError extends Error {
  /**
   * Makes the error.
   *
   * @param host the host's name
   * @param types the awaited types
   * @param timeoutMs how long it waited
   */
  constructor(host: string, types: readonly string[], timeoutMs: number) {
    super(`${host} sent no ${types.join(" or ")} message within ${timeoutMs} ms`);
    this.name = "HostTimeoutError";
  }
}

/** Most messages kept unread; a peer that floods past it fails the link. */
export const UNREAD_MESSAGES_MAX = 10_000;

interface Waiter {
  readonly types: readonly string[];
  readonly resolve: (message: HostMessage) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout> | undefined;
}

/** Messages received and not yet taken, with typed waits and stream handlers. */
class Inbox<M extends HostMessage> {
  readonly #unread: M[] = [];
  readonly #waiters: Waiter[] = [];
  readonly #handlers = new Map<string, (message: M) => void>();
  #failure: Error | undefined;

  constructor(readonly name: string) {}

  deliver(message: M): void {
    if (this.#failure !== undefined) return;
    if (typeof message !== "object" || message === null || typeof message.type !== "string") {
      return this.fail(new HostCrashedError(this.name, `sent a message without a type tag`));
    }
    const handler = this.#handlers.get(message.type);
    if (handler !== undefined) return handler(message);
    const at = this.#waiters.findIndex((waiter) => waiter.types.includes(message.type));
    if (at >= 0) {
      const [waiter] = this.#waiters.splice(at, 1);
      clearTimeout(waiter!.timer);
      return waiter!.resolve(message);
    }
    if (this.#unread.length >= UNREAD_MESSAGES_MAX) {
      return this.fail(
        new HostCrashedError(this.name, `more than ${UNREAD_MESSAGES_MAX} unread messages`),
      );
    }
    this.#unread.push(message);
  }

  fail(error: Error): void {
    this.#failure ??= error;
    for (const waiter of this.#waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(this.#failure);
    }
  }

  get failure(): Error | undefined {
    return this.#failure;
  }

  on(type: string, handler: (message: M) => void): void {
    this.#handlers.set(type, handler);
    for (let i = 0; i < this.#unread.length;) {
      if (this.#unread[i]!.type === type) handler(this.#unread.splice(i, 1)[0]!);
      else i++;
    }
  }

  next(types: readonly string[], timeoutMs: number): Promise<M> {
    const at = this.#unread.findIndex((message) => types.includes(message.type));
    if (at >= 0) return Promise.resolve(this.#unread.splice(at, 1)[0]!);
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise<M>((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs)
        ? setTimeout(() => {
          const index = this.#waiters.indexOf(waiter);
          if (index >= 0) this.#waiters.splice(index, 1);
          reject(new HostTimeoutError(this.name, types, timeoutMs));
        }, timeoutMs)
        : undefined;
      const waiter: Waiter = {
        types,
        resolve: resolve as (message: HostMessage) => void,
        reject,
        timer,
      };
      this.#waiters.push(waiter);
    });
  }
}

/** Receiving half, the same on both ends of a link. */
export interface MessageSource<M extends HostMessage> {
  /**
   * The next message of one of `types` (messages of other types stay queued for their own
   * waits, in order).
   *
   * @param types the type, or types, wanted
   * @param timeoutMs how long to wait; `Infinity` waits until the peer ends
   * @returns the message
   * @throws {HostCrashedError} when the peer ended first; {@link HostTimeoutError} after the wait
   */
  next<T extends M["type"]>(types: T | readonly T[], timeoutMs: number): Promise<MessageOf<M, T>>;
  /**
   * Hands every message of `type` (those already queued, then new ones) to `handler` instead of
   * queueing it: for streams such as progress.
   */
  on<T extends M["type"]>(type: T, handler: (message: MessageOf<M, T>) => void): void;
}

/** The supervisor's end of a link to one host: `In` goes to the host, `Out` comes from it. */
export interface HostLink<In extends HostMessage, Out extends HostMessage>
  extends MessageSource<Out> {
  /** The host's name, for messages. */
  readonly name: string;
  /** Sends a message (transfers are for Worker hosts only). */
  post(message: In, transfer?: Transferable[]): void;
  /** Stops the host now (idempotent); waits still pending are rejected. */
  terminate(): void;
  /** Resolves once the host has ended, with why. */
  readonly ended: Promise<string>;
}

function asList<T extends string>(types: T | readonly T[]): readonly T[] {
  return typeof types === "string" ? [types] : types;
}

function sourceOf<M extends HostMessage>(inbox: Inbox<M>): MessageSource<M> {
  return {
    next: <T extends M["type"]>(types: T | readonly T[], timeoutMs: number) =>
      inbox.next(asList(types), timeoutMs) as Promise<MessageOf<M, T>>,
    on: <T extends M["type"]>(type: T, handler: (message: MessageOf<M, T>) => void) =>
      inbox.on(type, handler as (message: M) => void),
  };
}

/** Worker hosts started by this process and not yet ended. */
let workersRunning = 0;

/** How many Worker hosts started through {@link startWorkerHost} are running now. */
export function workerHostsRunning(): number {
  return workersRunning;
}

/**
 * Starts a module Worker as a host.
 *
 * @param url the Worker's module (it uses {@link hostSide})
 * @param name the host's name in errors (`"client host"`)
 * @returns the link; the Worker's uncaught error ends it as a crash
 */
export function startWorkerHost<In extends HostMessage, Out extends HostMessage>(
  url: URL,
  name: string,
): HostLink<In, Out> {
  const worker = new Worker(url, { type: "module" });
  workersRunning++;
  const inbox = new Inbox<Out>(name);
  let end: (why: string) => void = () => {};
  const ended = new Promise<string>((resolve) => (end = resolve));
  let stopped = false;
  const stop = (why: string) => {
    if (stopped) return;
    stopped = true;
    worker.terminate();
    workersRunning--;
    inbox.fail(new HostCrashedError(name, why));
    end(why);
  };
  worker.onmessage = (event: MessageEvent<Out>) => inbox.deliver(event.data);
  worker.onerror = (event) => {
    event.preventDefault();
    stop(`crashed: ${event.message}`);
  };
  return {
    name,
    ...sourceOf(inbox),
    post: (message, transfer) => {
      if (!stopped) worker.postMessage(message, transfer ?? []);
    },
    terminate: () => stop("terminated"),
    ended,
  };
}

/** How to start a process host. */
export interface ProcessHostOptions {
  /** The module to run. */
  readonly script: URL;
  /** Deno flags (permissions) before the module. */
  readonly flags: readonly string[];
  /** Arguments after the module. */
  readonly args?: readonly string[];
  /** A command the `deno` command line is appended to (`["ip", "netns", "exec", "a"]`). */
  readonly wrapper?: readonly string[];
  /** Environment variables to add. */
  readonly env?: Readonly<Record<string, string>>;
  /** Where the process's stderr goes (default: inherited). */
  readonly stderr?: "inherit" | "null";
}

/** A process host: its link, and the process for signals. */
export interface ProcessHost<In extends HostMessage, Out extends HostMessage>
  extends HostLink<In, Out> {
  /** The child process. */
  readonly child: Deno.ChildProcess;
  /** Sends a signal (SIGTERM, SIGKILL, ...); a process already gone is ignored. */
  kill(signal: Deno.Signal): void;
}

/** Most bytes of one JSON line a process host may print. */
export const LINE_CHARS_MAX = 1 << 20;

/**
 * Starts a subprocess as a host: messages in are JSON lines on its stdin, messages out JSON
 * lines on its stdout. Its exit ends the link (a wait still pending is rejected with the exit
 * status).
 *
 * @param options the module, flags, arguments and environment
 * @param name the host's name in errors
 * @returns the host
 */
export function startProcessHost<In extends HostMessage, Out extends HostMessage>(
  options: ProcessHostOptions,
  name: string,
): ProcessHost<In, Out> {
  const denoArgs = ["run", ...options.flags, options.script.pathname, ...(options.args ?? [])];
  const wrapper = options.wrapper ?? [];
  const child = new Deno.Command(wrapper.length > 0 ? wrapper[0]! : Deno.execPath(), {
    args: wrapper.length > 0 ? [...wrapper.slice(1), Deno.execPath(), ...denoArgs] : denoArgs,
    env: { ...options.env },
    stdin: "piped",
    stdout: "piped",
    stderr: options.stderr ?? "inherit",
  }).spawn();
  const inbox = new Inbox<Out>(name);
  const writer = child.stdin.getWriter();
  let writing = Promise.resolve();
  const encoder = new TextEncoder();
  const reading = (async () => {
    for await (const line of jsonLines(child.stdout, name)) inbox.deliver(line as Out);
  })().catch((error) => inbox.fail(new HostCrashedError(name, String(error))));
  const ended = (async () => {
    const status = await child.status;
    await reading;
    const why = status.signal !== null
      ? `killed by ${status.signal}`
      : `exited with code ${status.code}`;
    inbox.fail(new HostCrashedError(name, why));
    writer.close().catch(() => {});
    return why;
  })();
  return {
    name,
    child,
    ...sourceOf(inbox),
    post: (message, transfer) => {
      if (transfer !== undefined && transfer.length > 0) {
        throw new TypeError(`${name}: a process host takes no transferred objects`);
      }
      const line = encoder.encode(`${JSON.stringify(message)}\n`);
      writing = writing.then(() => writer.write(line)).catch(() => {});
    },
    kill: (signal) => {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    },
    terminate: () => {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    },
    ended,
  };
}

/** Splits a byte stream into JSON values, one per line; a line that is not JSON is an error. */
async function* jsonLines(
  stream: ReadableStream<Uint8Array>,
  name: string,
): AsyncGenerator<unknown> {
  let buffered = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    buffered += text;
    if (buffered.length > LINE_CHARS_MAX && !buffered.includes("\n")) {
      throw new Error(`${name} printed a line of more than ${LINE_CHARS_MAX} characters`);
    }
    const lines = buffered.split("\n");
    buffered = lines.pop() ?? "";
    for (const line of lines) {
      if (line.trim() === "") continue;
      try {
        yield JSON.parse(line);
      } catch {
        throw new Error(`${name} printed a line that is not JSON: ${line.slice(0, 200)}`);
      }
    }
  }
}

/** The host's end of its link: `In` comes from the supervisor, `Out` goes to it. */
export interface HostSide<In extends HostMessage, Out extends HostMessage>
  extends MessageSource<In> {
  /** Sends a message to the supervisor. */
  post(message: Out, transfer?: Transferable[]): void;
  /** `worker` inside a Worker, `process` in a subprocess. */
  readonly kind: "worker" | "process";
}

/** The Worker global scope, typed for what a host uses (no `postMessage` in a main module). */
const scope = globalThis as unknown as {
  postMessage?: (message: unknown, transfer?: Transferable[]) => void;
  onmessage: ((event: MessageEvent) => void) | null;
};

/**
 * This module's end of its link: `postMessage` in a Worker; JSON lines on stdout and stdin in a
 * process (stdin's end is the supervisor going away: waits are rejected).
 *
 * @param name how errors name the supervisor
 * @returns the host side
 */
export function hostSide<In extends HostMessage, Out extends HostMessage>(
  name = "supervisor",
): HostSide<In, Out> {
  const inbox = new Inbox<In>(name);
  if (typeof scope.postMessage === "function") {
    const post = scope.postMessage.bind(globalThis);
    scope.onmessage = (event) => inbox.deliver(event.data as In);
    return {
      kind: "worker",
      ...sourceOf(inbox),
      post: (message, transfer) => post(message, transfer ?? []),
    };
  }
  const encoder = new TextEncoder();
  let reading = false;
  // Stdin is read only once something waits on it: a process that only reports (an agent run
  // by hand, its stdin a terminal or /dev/null) never touches it.
  const read = () => {
    if (reading) return;
    reading = true;
    (async () => {
      for await (const line of jsonLines(Deno.stdin.readable, name)) inbox.deliver(line as In);
      inbox.fail(new HostCrashedError(name, "closed our stdin"));
    })().catch((error) => inbox.fail(new HostCrashedError(name, String(error))));
  };
  const source = sourceOf(inbox);
  return {
    kind: "process",
    next: (types, timeoutMs) => {
      read();
      return source.next(types, timeoutMs);
    },
    on: (type, handler) => {
      read();
      source.on(type, handler);
    },
    post: (message, transfer) => {
      if (transfer !== undefined && transfer.length > 0) {
        throw new TypeError("a process host cannot transfer objects");
      }
      const bytes = encoder.encode(`${JSON.stringify(message)}\n`);
      // Bounded: each turn writes at least one byte or throws.
      for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
    },
  };
}
