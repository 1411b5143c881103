/**
 * Virtual time for the simulated world: one seeded scheduler that owns the clock, the timers
 * and the randomness of everything running in it.
 *
 * While a world runs, {@link VirtualTime.install} swaps the runtime's clock and timer globals
 * (`Date.now`, `performance.now`, `setTimeout`, `setInterval` and their clears,
 * `Deno.unrefTimer`/`refTimer`, `Math.random`, `crypto.getRandomValues`, `crypto.randomUUID`)
 * for virtual ones, so the real code (the handshake driver, the session, the backup client and
 * server, the storage sockets' lease and waits) runs unchanged on virtual time. Decided over a
 * `Clock`/`Timers` parameter threaded through every caller: the code under test reads the clock
 * and sets timers in about twenty places across areas other engineers own, and a swap for the
 * duration of a run reaches all of them with no edit; `uninstall` restores the originals.
 *
 * The scheduler runs one event at a time. Between events it waits for the process to go quiet:
 * every microtask has run and no real file-system call started by the code under test is still
 * pending (calls of `Deno.*` and `Deno.FsFile` are counted while installed), and the world's
 * activity counter stayed still across two macrotask turns. Only then does virtual time move
 * to the next event, so a run depends on its seed alone.
 *
 * @module
 */

/** A seeded 32-bit generator (mulberry32): the same seed gives the same sequence. */
export class SeededRandom {
  #state: number;

  /** @param seed any integer */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** The next value in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [min, max]. */
  between(min: number, max: number): number {
    return min + this.below(max - min + 1);
  }

  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
}

interface TimedEvent {
  readonly atMs: number;
  readonly seq: number;
  readonly run: () => void;
  readonly label: string;
  cancelled: boolean;
}

/** Ids of virtual timers start here, far from any real timer id. */
const TIMER_ID_BASE = 1_000_000_000;
/**
 * Real ms one quiescence wait takes at most: real file calls on a machine shared with other
 * work can take long, so the bound is generous; only a call that never ends reaches it.
 */
const SETTLE_REAL_MS_MAX = 120_000;
/** Macrotask turns one quiescence wait takes at most (the loop's own bound). */
const SETTLE_TURNS_MAX = 50_000_000;
/** The real clock, taken before any world swaps `performance.now`. */
const realNowMs = performance.now.bind(performance);

/** Why a world stopped before its main task ended. */
export class SimulationStuckError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SimulationStuckError";
  }
}

/** The clock, the timers and the event queue of one simulated world. */
export class VirtualTime {
  readonly random: SeededRandom;
  #nowMs = 0;
  /** Macrotask turns waited so far (a cost measure). */
  turns = 0;
  /** Events run so far. */
  eventsRun = 0;
  /** Files the code opened with `Deno.open` during the run (a crash closes a dead host's). */
  readonly opened: Array<{ readonly path: string; readonly file: Deno.FsFile }> = [];
  #seq = 0;
  #events: TimedEvent[] = [];
  #timers = new Map<number, TimedEvent>();
  #nextTimerId = TIMER_ID_BASE;
  #activity = 0;
  #realIoPending = 0;
  /** The file calls still pending, to wait on rather than spin while they run. */
  readonly #pendingIo = new Set<Promise<void>>();
  #restore: (() => void) | undefined;
  /**
   * @param seed seeds the scheduler's choices and the swapped `Math.random` and crypto
   * @param epochMs what the virtual `Date.now` starts from (a fixed date, so snapshot ids repeat)
   */
  constructor(readonly seed: number, readonly epochMs: number = Date.UTC(2026, 0, 1)) {
    this.random = new SeededRandom(seed);
  }

  /** Virtual ms since the world started. */
  get nowMs(): number {
    return this.#nowMs;
  }

  /** Events waiting (timers included). */
  get pendingEvents(): number {
    return this.#events.filter((event) => !event.cancelled).length;
  }

  /** Counts a change in the world (a socket call started or ended): quiescence waits for none. */
  touch(): void {
    this.#activity++;
  }

  /**
   * Runs `run` `delayMs` from now (virtual).
   *
   * @returns a cancel function
   */
  at(delayMs: number, label: string, run: () => void): () => void {
    const event: TimedEvent = {
      atMs: this.#nowMs + Math.max(0, delayMs),
      seq: this.#seq++,
      run,
      label,
      cancelled: false,
    };
    this.#insert(event);
    this.touch();
    return () => (event.cancelled = true);
  }

  #insert(event: TimedEvent): void {
    // Sorted by (atMs, seq); the queue stays small, so a linear insert from the back is cheap.
    let index = this.#events.length;
    while (index > 0) {
      const before = this.#events[index - 1]!;
      if (before.atMs < event.atMs || (before.atMs === event.atMs && before.seq < event.seq)) {
        break;
      }
      index--;
    }
    this.#events.splice(index, 0, event);
  }

  #setTimer(handler: unknown, delayMs: unknown, repeat: boolean, args: unknown[]): number {
    const id = this.#nextTimerId++;
    const wait = Math.max(repeat ? 1 : 0, Number(delayMs) || 0);
    const fire = () => {
      if (repeat) this.#schedule(id, wait, fire);
      else this.#timers.delete(id);
      if (typeof handler === "function") handler(...args);
    };
    this.#schedule(id, wait, fire);
    return id;
  }

  #schedule(id: number, delayMs: number, fire: () => void): void {
    const event: TimedEvent = {
      atMs: this.#nowMs + delayMs,
      seq: this.#seq++,
      run: fire,
      label: "timer",
      cancelled: false,
    };
    this.#timers.set(id, event);
    this.#insert(event);
  }

  #clearTimer(id: unknown): void {
    const event = this.#timers.get(Number(id));
    if (event !== undefined) event.cancelled = true;
    this.#timers.delete(Number(id));
  }

  /**
   * Runs `main` to its end on virtual time. Installs the virtual globals first and restores them
   * after, whatever happens.
   *
   * @param main the world's main task
   * @param eventsMax bound on events run
   * @returns what `main` returned
   * @throws {SimulationStuckError} when no event is left and `main` has not ended (a deadlock),
   *   or after `eventsMax` events
   */
  async run<T>(main: () => Promise<T>, eventsMax = 1_000_000): Promise<T> {
    this.install();
    try {
      let settled: { value: T } | { error: unknown } | undefined;
      main().then((value) => (settled = { value }), (error) => (settled = { error }));
      for (let ran = 0; ran < eventsMax; ran++) {
        await this.#quiesce();
        if (settled !== undefined) break;
        const event = this.#nextEvent();
        if (event === undefined) {
          throw new SimulationStuckError(
            `deadlock at ${this.#nowMs} ms: the main task waits and no event is left`,
          );
        }
        this.#nowMs = Math.max(this.#nowMs, event.atMs);
        this.eventsRun++;
        event.run();
      }
      if (settled === undefined) {
        throw new SimulationStuckError(`no end after ${eventsMax} events (${this.#nowMs} ms)`);
      }
      if ("error" in settled) throw settled.error;
      return settled.value;
    } finally {
      this.uninstall();
    }
  }

  #nextEvent(): TimedEvent | undefined {
    // Bounded by the queue's length: cancelled events are dropped on the way.
    while (this.#events.length > 0) {
      const event = this.#events.shift()!;
      if (!event.cancelled) return event;
    }
    return undefined;
  }

  /** Waits until every microtask has run and no counted real I/O is pending. */
  async #quiesce(): Promise<void> {
    let still = 0;
    const startedMs = realNowMs();
    for (let turn = 0; turn < SETTLE_TURNS_MAX; turn++) {
      this.turns++;
      if (turn % 1024 === 1023 && realNowMs() - startedMs > SETTLE_REAL_MS_MAX) break;
      const before = this.#activity;
      // While a file call runs, wait for it (or any) to end instead of spinning turns.
      if (this.#pendingIo.size > 0) await Promise.race(this.#pendingIo);
      await realTurn();
      if (this.#realIoPending === 0 && this.#activity === before) still++;
      else still = 0;
      if (still >= 2) return;
    }
    throw new SimulationStuckError(
      `the process did not go quiet (${this.#realIoPending} file calls pending) in ` +
        `${Math.round(realNowMs() - startedMs)} real ms`,
    );
  }

  /** Swaps the clock, timer and randomness globals for virtual ones (see the module doc). */
  install(): void {
    if (this.#restore !== undefined) return;
    const restores: Array<() => void> = [];
    const swap = <O extends object, K extends keyof O>(owner: O, key: K, value: O[K]) => {
      const original = owner[key];
      (owner as Record<K, O[K]>)[key] = value;
      restores.push(() => ((owner as Record<K, O[K]>)[key] = original));
    };
    const g = globalThis as unknown as Record<string, unknown>;
    swap(
      g,
      "setTimeout",
      (h: unknown, ms?: unknown, ...a: unknown[]) => this.#setTimer(h, ms, false, a),
    );
    swap(
      g,
      "setInterval",
      (h: unknown, ms?: unknown, ...a: unknown[]) => this.#setTimer(h, ms, true, a),
    );
    swap(g, "clearTimeout", (id: unknown) => this.#clearTimer(id));
    swap(g, "clearInterval", (id: unknown) => this.#clearTimer(id));
    swap(Date, "now", () => this.epochMs + this.#nowMs);
    swap(performance, "now", () => this.#nowMs);
    swap(Math, "random", () => this.random.next());
    swap(Deno, "unrefTimer", () => {});
    swap(Deno, "refTimer", () => {});
    swap(crypto, "getRandomValues", <T extends ArrayBufferView | null>(array: T): T => {
      if (array !== null) {
        const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
        for (let i = 0; i < bytes.length; i++) bytes[i] = this.random.below(256);
      }
      return array;
    });
    swap(crypto, "randomUUID", () => {
      const hex = [...crypto.getRandomValues(new Uint8Array(16))]
        .map((b) => b.toString(16).padStart(2, "0")).join("");
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${
        hex.slice(20, 32)
      }` as `${string}-${string}-${string}-${string}-${string}`;
    });
    this.#countRealIo(swap);
    this.#countNodeIo(swap);
    this.#restore = () => {
      for (const restore of restores.reverse()) restore();
    };
  }

  /** Counts pending `Deno.*` and `Deno.FsFile` promises (the file system the code reaches). */
  #countRealIo(swap: <O extends object, K extends keyof O>(o: O, k: K, v: O[K]) => void): void {
    const counted = (original: (...a: unknown[]) => unknown) =>
      function (this: unknown, ...args: unknown[]): unknown {
        const result = original.apply(this, args);
        if (result instanceof Promise) return time.#track(result);
        return result;
      };
    // deno-lint-ignore no-this-alias
    const time = this;
    const deno = Deno as unknown as Record<string, unknown>;
    for (const name of REAL_IO_CALLS) {
      const original = deno[name];
      if (typeof original === "function") {
        swap(deno, name, counted(original as (...a: unknown[]) => unknown));
      }
    }
    const open = deno.open as (...a: unknown[]) => Promise<Deno.FsFile>;
    swap(deno, "open", (...args: unknown[]) =>
      open(...args).then((file) => {
        this.opened.push({ path: String(args[0]), file });
        return file;
      }));
    const readDir = Deno.readDir;
    swap(Deno, "readDir", (path: string | URL) => {
      const iterator = readDir(path)[Symbol.asyncIterator]();
      const entries: AsyncIterableIterator<Deno.DirEntry> = {
        next: () => time.#track(iterator.next()),
        [Symbol.asyncIterator]: () => entries,
      };
      return entries;
    });
    const proto = Deno.FsFile.prototype as unknown as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const original = Object.getOwnPropertyDescriptor(proto, name)?.value;
      if (name !== "constructor" && typeof original === "function") {
        swap(proto, name, counted(original as (...a: unknown[]) => unknown));
      }
    }
  }

  /** Counts pending `node:fs` promise calls and file-handle calls (restore and packing use them). */
  #countNodeIo(swap: <O extends object, K extends keyof O>(o: O, k: K, v: O[K]) => void): void {
    // deno-lint-ignore no-this-alias
    const time = this;
    const wrapAll = (owner: Record<string, unknown>, names: readonly string[]) => {
      for (const name of names) {
        const original = Object.getOwnPropertyDescriptor(owner, name)?.value;
        if (typeof original !== "function") continue;
        swap(owner, name, function (this: unknown, ...args: unknown[]): unknown {
          const result = (original as (...a: unknown[]) => unknown).apply(this, args);
          return result instanceof Promise ? time.#track(result) : result;
        });
      }
    };
    const promises = nodeFs.promises as unknown as Record<string, unknown>;
    wrapAll(promises, Object.keys(promises));
    if (fileHandleProto !== undefined) {
      wrapAll(
        fileHandleProto,
        Object.getOwnPropertyNames(fileHandleProto).filter((n) => n !== "constructor"),
      );
    }
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#realIoPending++;
    const settled = promise.then(() => {}, () => {});
    this.#pendingIo.add(settled);
    return promise.finally(() => {
      this.#realIoPending--;
      this.#pendingIo.delete(settled);
      this.touch();
    });
  }

  /** Restores what {@link install} swapped. */
  uninstall(): void {
    this.#restore?.();
    this.#restore = undefined;
  }
}

/** The `Deno.*` calls whose promises are counted as real I/O. */
const REAL_IO_CALLS = [
  "open",
  "lstat",
  "stat",
  "realPath",
  "readTextFile",
  "readFile",
  "writeTextFile",
  "writeFile",
  "mkdir",
  "rename",
  "remove",
  "readLink",
  "symlink",
  "link",
  "chmod",
  "chown",
  "utime",
  "truncate",
  "makeTempDir",
  "copyFile",
];

const { setImmediate: realSetImmediate } = await import("node:timers");
const nodeFs = (await import("node:fs")).default;

/** The prototype of `node:fs` file handles (not exported by name): taken from one open handle. */
const fileHandleProto: Record<string, unknown> | undefined = await (async () => {
  try {
    const handle = await nodeFs.promises.open(new URL(import.meta.url).pathname, "r");
    const proto = Object.getPrototypeOf(handle) as Record<string, unknown>;
    await handle.close();
    return proto;
  } catch {
    return undefined; // without read permission: the settle rule alone covers node:fs calls
  }
})();

/** One real macrotask turn: every microtask queued before it has run. */
function realTurn(): Promise<void> {
  return new Promise((resolve) => realSetImmediate(resolve));
}
