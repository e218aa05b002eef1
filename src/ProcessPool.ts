/**
 * A pool of real OS child processes that run typed tasks: the `ProcessPool`
 * service, its layers (local processes, `layerTest` in this process, and the
 * cluster), and accessors for the pool in context.
 *
 * @since 0.1.0
 */
import type { Sharding } from "effect/cluster/Sharding"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as References from "effect/References"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { checkPool, moduleUrl as toModuleUrl } from "./internal/options.ts"
import { type Hooks, makeLocal } from "./internal/processes/pool.ts"
import { makeService } from "./internal/service/service.ts"
import { explainSilentExit, refusePoolOfItself } from "./internal/wire/guard.ts"
import type { InvalidOption, PoolError, WorkerStartError } from "./PoolError.ts"
import type * as Task from "./Task.ts"
import { isHandlers } from "./Worker.ts"
import type * as Worker from "./Worker.ts"

/**
 * What workers started under Node's permission model may do, beyond what the
 * pool needs for itself (the `permissions` option of {@link layer}). Each
 * field is one of Node's flags; what is absent is denied.
 *
 * @example
 * ```ts
 * const permissions: ProcessPool.Permissions = {
 *   allowFsRead: ["/srv/inbox"],
 *   allowFsWrite: ["/srv/outbox"]
 * }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Permissions {
  /** Files and directories (with all they hold) handlers may read: `--allow-fs-read`. */
  readonly allowFsRead?: ReadonlyArray<string> | undefined
  /** Files and directories (with all they hold) handlers may write: `--allow-fs-write`. */
  readonly allowFsWrite?: ReadonlyArray<string> | undefined
  /** Whether handlers may start processes: `--allow-child-process`. */
  readonly allowChildProcess?: boolean | undefined
  /** Whether handlers may start worker threads: `--allow-worker`. */
  readonly allowWorker?: boolean | undefined
  /** Whether handlers may load native addons: `--allow-addons`. */
  readonly allowAddons?: boolean | undefined
}

/**
 * Options of {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The worker module: a URL or path string whose default export is `Worker.handlers(...)`. */
  readonly worker: string | URL
  /**
   * What each worker is: `"process"` (the default), a child process of its
   * own, or `"thread"`, a `node:worker_threads` thread of this process. The
   * same module, tasks and handlers run on either.
   *
   * - A process isolates: a crash, a leak, a native fault, `process.abort()`,
   *   or a handler that changes `process.env` or the current directory
   *   touches only that worker.
   * - A thread is faster to call, to start and to feed bytes (a task with
   *   `transfer` moves its byte arrays rather than copying them), and shares
   *   the process: what one handler does to the process, every thread and
   *   the caller see. `maxWorkerMemory` is then its heap limit, past which
   *   the thread dies (`LimitExceeded`) rather than being recycled.
   *   `processGroups`, `permissions` and `maxCpuTime` mean nothing for
   *   threads and are refused, as are `execArgv` flags that only a process
   *   takes.
   *
   * @example
   * ```ts
   * ProcessPool.layer({ worker: import.meta.url, isolation: "thread" })
   * ```
   */
  readonly isolation?: "process" | "thread" | undefined
  /** How many workers. Defaults to `os.availableParallelism()`. Sets both `minSize` and `maxSize`. */
  readonly size?: number | undefined
  /** Workers kept even when idle. The layer is ready once these are. Defaults to `size`, or 1 when only `maxSize` is given. */
  readonly minSize?: number | undefined
  /** Workers at most: the pool grows up to this while work is queued. Defaults to `size`. */
  readonly maxSize?: number | undefined
  /** A worker idle this long is stopped, while more than `minSize` remain. Defaults to 30 seconds. */
  readonly idleTimeout?: Duration.Input | undefined
  /**
   * A worker whose resident set size passes this many bytes after a task is
   * recycled: it finishes the tasks it holds, then a fresh process replaces it.
   * Guards against leaks in handlers or their libraries. Defaults to no ceiling.
   * On threads, the heap limit of each thread instead: past it the thread
   * dies, and its task fails with `LimitExceeded`.
   */
  readonly maxWorkerMemory?: number | undefined
  /**
   * The most bytes the old generation of a worker's V8 heap may hold, where
   * all but its youngest objects live (`--max-old-space-size` for a process,
   * the thread's `resourceLimits` for a thread). A task that grows it past
   * the limit fails with `LimitExceeded`, and its worker is replaced.
   * Defaults to Node's own limit.
   *
   * @example
   * ```ts
   * ProcessPool.layer({ worker: import.meta.url, maxWorkerHeap: 256 * 2 ** 20 })
   * ```
   */
  readonly maxWorkerHeap?: number | undefined
  /**
   * The most CPU time one task may use, beside its wall-clock `timeout`: past
   * it, its worker is killed and replaced, and the task fails with
   * `LimitExceeded`. It counts the worker's CPU time while the task runs,
   * all its threads included, so it needs `workerConcurrency: 1`. Read from
   * `/proc`: Linux only, and processes only. Defaults to none.
   *
   * @example
   * ```ts
   * ProcessPool.layer({ worker: import.meta.url, maxCpuTime: "2 seconds" })
   * ```
   */
  readonly maxCpuTime?: Duration.Input | undefined
  /**
   * Start the workers under Node's permission model (`--permission`), allowed
   * only what is listed here, besides what the pool needs for itself: to
   * read its own files, the worker module's package, the `node_modules`
   * above them, `effect`, and the bundle cache. `{}` allows nothing more.
   * Confined workers keep a compile cache of their own (shared only by
   * workers of the same module and permissions), and a write grant that
   * holds a cache is refused. A handler that
   * oversteps fails with a defect whose `code` is `"ERR_ACCESS_DENIED"`, and
   * its worker goes on. Processes only: a thread shares its parent's
   * permissions. Node 24 cannot confine the network; see the README's
   * "Running untrusted code".
   *
   * @example
   * ```ts
   * ProcessPool.layer({ worker: import.meta.url, permissions: { allowFsRead: ["/srv/inbox"] } })
   * ```
   */
  readonly permissions?: Permissions | undefined
  /** How often workers are pinged. Defaults to 1 second. */
  readonly heartbeatInterval?: Duration.Input | undefined
  /**
   * A worker that does not answer a ping sent while it was idle within this
   * time is hung (its event loop is blocked outside any task): it is killed
   * and replaced. Defaults to 10 seconds. To tell a hang from a long task, a
   * ping travels ahead of the first task after a pause, which costs about
   * 10 µs of round trip; `Infinity` turns hang detection, and that cost, off.
   */
  readonly hangTimeout?: Duration.Input | undefined
  /** How many tasks one worker runs at once. Defaults to 1: a worker is one CPU. */
  readonly workerConcurrency?: number | undefined
  /**
   * Node flags for the workers. Defaults to the parent's, without inspector
   * flags; a thread gets the parent's as Node gives them, and flags Node does
   * not take for a thread are refused.
   */
  readonly execArgv?: ReadonlyArray<string> | undefined
  /** Environment of the workers. Defaults to the parent's. */
  readonly env?: NodeJS.ProcessEnv | undefined
  /**
   * Where workers keep Node's compile cache, which cuts their start-up by
   * about 40% after the first run: a directory, or `false` for none. Defaults
   * to a directory under the OS temp dir, unless `NODE_COMPILE_CACHE` is set.
   * Threads keep theirs there too: each thread loads its modules apart, and
   * Node gives it the cache its environment names.
   */
  readonly compileCache?: string | false | undefined
  /**
   * Where workers' bundle of `effect` is cached, or `false` to load `effect`
   * file by file. A worker loads `effect` from one small bundle, built once
   * with esbuild (an optional dependency) and rebuilt when a file of the
   * worker's module graph changes: it starts in about a third of the time and
   * in less memory. The worker module itself, and every other package, load
   * as they are. Without esbuild, or when the module cannot be scanned or the
   * directory written, workers take the plain path. Defaults to `bundles`
   * under the compile cache's default directory.
   */
  readonly bundle?: string | false | undefined
  /**
   * How many tasks are sent ahead to a busy worker, to hide the round trip.
   * Defaults to "auto": up to 256 for tiny tasks, one for tasks of a millisecond or more.
   */
  readonly prefetch?: number | "auto" | undefined
  /** How many tasks may wait for a worker. Defaults to 65,536. */
  readonly maxQueue?: number | undefined
  /** What `submit` does when the queue is full: wait for room (the default), or fail with `QueueFull`. */
  readonly queuePolicy?: "wait" | "reject" | undefined
  /** How long an interrupted task may take to stop before its worker is killed. Defaults to 1 second. */
  readonly interruptGrace?: Duration.Input | undefined
  /** How long a worker may take to become ready. Defaults to 30 seconds. */
  readonly startTimeout?: Duration.Input | undefined
  /** Consecutive start failures after which the pool reports itself broken. Defaults to 5. */
  readonly maxStartFailures?: number | undefined
  /** Recycle a worker after this many tasks (it finishes them first). Defaults to never. */
  readonly maxTasksPerWorker?: number | undefined
  /** On scope close: let queued and running tasks finish ("drain", the default), or end them ("interrupt"). */
  readonly shutdown?: "drain" | "interrupt" | undefined
  /** How long draining may take, and then how long workers may take to exit before they are killed. Defaults to 5 seconds. */
  readonly shutdownTimeout?: Duration.Input | undefined
  /** The largest frame either side accepts. Defaults to 256 MiB. */
  readonly maxFrameSize?: number | undefined
  /** Forward the workers' stderr to the parent's stderr. Defaults to true. */
  readonly inheritStderr?: boolean | undefined
  /**
   * For streaming tasks: how many items a worker may produce ahead of the
   * consumer, unless a call says otherwise with `window`. Defaults to 128.
   */
  readonly streamWindow?: number | undefined
  /**
   * Start each worker in a process group (and session) of its own, so that
   * the processes its handlers start are killed with it, and by a watchdog if
   * the parent is SIGKILLed. Defaults to true. On Linux a session is also a
   * scheduling group, which leaves a busy parent a smaller share of the CPU
   * when there are fewer cores than busy processes: `false` gives that back,
   * for `map`s of tiny items, and leaves helpers to outlive their worker.
   * Refused with `isolation: "thread"`: threads have no process of their own.
   */
  readonly processGroups?: boolean | undefined
  /**
   * The pool's name: the `pool` attribute of its metrics. Defaults to
   * `"default"`. Pools of one name count into the same series.
   */
  readonly name?: string | undefined
  /**
   * Record the pool's `process_pool_*` metrics in the `Metric` registry of
   * the context the pool is built in. Defaults to true. The workers' own
   * metrics and log lines reach the parent either way.
   */
  readonly metrics?: boolean | undefined
}

/**
 * Options of a single `submit`.
 *
 * @since 0.1.0
 * @category models
 */
export interface SubmitOptions {
  /**
   * Fail with `TaskTimeout`, and stop the work, if the task runs longer than
   * this. Counted from when it starts (through the cluster: from the call, a
   * wait for a runner included); for a streaming task it bounds the whole
   * stream. Each attempt of
   * an idempotent task that is retried has the whole timeout.
   */
  readonly timeout?: Duration.Input | undefined
  /**
   * For a streaming task: how many items the worker may produce ahead of the
   * consumer. The worker's stream is paused (not buffered) beyond it.
   * Defaults to the pool's `streamWindow`; through the cluster, to 16,384
   * items, which the runner reads ahead (the engine acknowledges each chunk
   * of a stream before it sends the next).
   */
  readonly window?: number | undefined
  /**
   * Through the cluster ({@link layerCluster}): tasks with the same key go to
   * the same runner. Without one, tasks spread evenly over the runners. A
   * local pool ignores it.
   */
  readonly key?: string | undefined
}

/**
 * Options of `map`, `mapExits` and `stream`.
 *
 * @since 0.1.0
 * @category models
 */
export interface MapOptions {
  /** Results in input order (the default), or as they complete. */
  readonly ordered?: boolean | undefined
  /** How many chunks may be in flight at once. Defaults to twice `maxSize`, plus two. */
  readonly concurrency?: number | undefined
  /** Items per message to a worker. `"auto"` (the default) starts at 1 and adapts to the measured time per item. */
  readonly chunkSize?: number | "auto" | undefined
  /** For `stream`: how many results may wait for the consumer beyond the chunks in flight. Defaults to none. */
  readonly bufferSize?: number | undefined
  /**
   * Through the cluster ({@link layerCluster}): every chunk goes to the runner
   * of this key. Without one, chunks spread over the runners. A local pool
   * ignores it.
   */
  readonly key?: string | undefined
}

/**
 * A snapshot of the pool.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** `"open"`; `"closing"` once its scope began to close (new work gets `PoolClosed`); `"closed"` once its workers are gone. */
  readonly state: "open" | "closing" | "closed"
  /** Tasks waiting for a worker. */
  readonly queued: number
  /** Tasks sent to a worker and not yet answered: those running, and those sent ahead. */
  readonly inflight: number
  /** Tasks running in a worker now: started, and not yet answered. A `map` chunk counts as one. */
  readonly running: number
  /** Workers that died unexpectedly (killed, exited, hung or runaway) since the pool started. */
  readonly crashes: number
  readonly workers: ReadonlyArray<{
    readonly pid: number
    /** "starting", "ready", "retiring" (recycled: finishing its tasks), "stopping" */
    readonly state: string
    /** Tasks sent to it and not yet answered: `running` plus `prefetched`. */
    readonly inflight: number
    /** Tasks it is running now: at most `workerConcurrency`. */
    readonly running: number
    /** Tasks sent ahead to it, waiting in the worker behind the running ones. */
    readonly prefetched: number
    /** Whether it is running a task now. */
    readonly busy: boolean
    readonly tasksDone: number
    /**
     * Resident set size in bytes, as of its last heartbeat; 0 before the
     * first. For a thread, the bytes of its heap in use.
     */
    readonly rss: number
    /**
     * Payload bytes sent to it through its shared file (tmpfs, Linux) rather
     * than its pipe: messages of 64 KiB or more go that way.
     */
    readonly sharedBytes: number
    /** Through the cluster: the address of the runner this worker belongs to. */
    readonly runner?: string | undefined
  }>
  /**
   * Through the cluster ({@link layerCluster}): each runner's own snapshot,
   * by address, with the pid of the runner process. The fields above are
   * their sums.
   */
  readonly runners?:
    | ReadonlyArray<{
      readonly runner: string
      readonly pid: number
      readonly stats: Stats
    }>
    | undefined
}

/**
 * The arguments of `submit` after the task: its payload and options. The
 * payload may be left out when the task has none (`payload: Schema.Void`, the
 * default).
 *
 * @example
 * ```ts
 * import * as Schema from "effect/Schema"
 * import { ProcessPool, Task } from "effect-process-pool"
 *
 * const Tick = Task.make("Tick", { success: Schema.Number })
 * const program = ProcessPool.submit(Tick) // no `undefined` needed
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type SubmitArgs<T extends Task.Task.Any> = [Task.Task.Payload<T>] extends [void]
  ? [payload?: Task.Task.Payload<T>, options?: SubmitOptions]
  : [payload: Task.Task.Payload<T>, options?: SubmitOptions]

/**
 * What `submit` returns for a task: an `Effect` of its success, or, for a
 * streaming task, a `Stream` of its items.
 *
 * @since 0.1.0
 * @category models
 */
export type Submitted<T extends Task.Task.Any, R = never> = T extends Task.Task.Streaming
  ? Stream.Stream<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError, R>
  : Effect.Effect<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError, R>

/**
 * The inputs of `stream`: an iterable, or a stream that may fail with `E` and need `R`.
 *
 * @since 0.1.0
 * @category models
 */
export type Inputs<A, E = never, R = never> = Iterable<A> | Stream.Stream<A, E, R>

/**
 * The process pool service: the tag to get the pool from the context, or to
 * provide one. Its methods are those of {@link Service}; {@link layer}
 * provides a pool of worker processes, and {@link layerCluster} one backed by
 * the runners of a cluster.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 * import { Fib } from "./tasks.ts"
 *
 * const program = Effect.gen(function*() {
 *   const pool = yield* ProcessPool.ProcessPool
 *   const a = yield* pool.submit(Fib, 30)
 *   const all = yield* pool.map(Fib, [10, 20, 30])
 * }).pipe(Effect.provide(ProcessPool.layer({ worker: new URL("./worker.ts", import.meta.url) })))
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class ProcessPool extends Context.Service<ProcessPool, Service>()("effect-process-pool/ProcessPool") {}

/**
 * What a pool offers, as `yield* ProcessPool.ProcessPool` and {@link make}
 * give it: run one task or many, and follow the pool. A method fails only
 * with the task's own failure or a {@link PoolError}, and needs nothing from
 * the context; `stream` adds what its input stream may fail with and needs.
 * The functions of this module with the same names ({@link submit},
 * {@link map}, ...) call them on the pool in context.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Runs one task in a worker: an `Effect` of its result, or, for a streaming
   * task, a lazy `Stream` of its items. The payload is checked against the
   * task's Schema before it is sent, and the result when it comes back. A
   * task without a payload takes none: `submit(Tick)`. Interrupting the
   * caller interrupts the task in its worker; see {@link SubmitOptions} for
   * a timeout.
   *
   * @example
   * ```ts
   * import * as Effect from "effect/Effect"
   * import * as Stream from "effect/Stream"
   * import { ProcessPool } from "effect-process-pool"
   * import { Count, Fib } from "./tasks.ts"
   *
   * const program = Effect.gen(function*() {
   *   const pool = yield* ProcessPool.ProcessPool
   *   const n = yield* pool.submit(Fib, 30, { timeout: "5 seconds" }) // Effect<number, FibTooLarge | PoolError>
   *   yield* pool.submit(Count, 3).pipe(Stream.runForEach((i) => Effect.log(i))) // a streaming task
   * })
   * ```
   */
  readonly submit: <T extends Task.Task.Any>(task: T, ...args: SubmitArgs<T>) => Submitted<T>
  /**
   * Runs a task over many payloads, sent to the workers in chunks, and gives
   * the results in input order (or as they complete, with `ordered: false`).
   * Fails fast: the first failure interrupts the rest. See
   * {@link MapOptions}.
   *
   * @example
   * ```ts
   * import * as Effect from "effect/Effect"
   * import { ProcessPool } from "effect-process-pool"
   * import { Square } from "./tasks.ts"
   *
   * const program = Effect.gen(function*() {
   *   const pool = yield* ProcessPool.ProcessPool
   *   const squares = yield* pool.map(Square, [1, 2, 3, 4, 5]) // [1, 4, 9, 16, 25]
   * })
   * ```
   */
  readonly map: <T extends Task.Task.Unary>(
    task: T,
    inputs: Iterable<Task.Task.Payload<T>>,
    options?: MapOptions
  ) => Effect.Effect<Array<Task.Task.Success<T>>, Task.Task.Failure<T> | PoolError>
  /**
   * Runs a task over many payloads, as {@link Service.map} does, and gives
   * every item's `Exit`, in the same order: a failure does not stop the
   * rest. The effect itself fails only when an option makes no sense
   * (`InvalidOption`).
   *
   * @example
   * ```ts
   * import * as Effect from "effect/Effect"
   * import * as Exit from "effect/Exit"
   * import { ProcessPool } from "effect-process-pool"
   * import { Fib } from "./tasks.ts"
   *
   * const program = Effect.gen(function*() {
   *   const pool = yield* ProcessPool.ProcessPool
   *   const exits = yield* pool.mapExits(Fib, [10, 95, 20])
   *   const failed = exits.filter(Exit.isFailure).length // 1: Fib(95) fails with FibTooLarge
   * })
   * ```
   */
  readonly mapExits: <T extends Task.Task.Unary>(
    task: T,
    inputs: Iterable<Task.Task.Payload<T>>,
    options?: MapOptions
  ) => Effect.Effect<Array<Exit.Exit<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError>>, InvalidOption>
  /**
   * Runs a task over an iterable or a stream: a lazy, bounded stream of
   * results. Inputs are pulled only as workers free up, so an endless input
   * stream is fine; `concurrency` and `bufferSize` ({@link MapOptions}) bound
   * what is in flight and what waits for the consumer. The stream fails with
   * the first failure, of a task or of the inputs.
   *
   * @example
   * ```ts
   * import * as Effect from "effect/Effect"
   * import * as Stream from "effect/Stream"
   * import { ProcessPool } from "effect-process-pool"
   * import { Square } from "./tasks.ts"
   *
   * const program = Effect.gen(function*() {
   *   const pool = yield* ProcessPool.ProcessPool
   *   yield* pool.stream(Square, Stream.range(1, 1_000_000), { ordered: false }).pipe(
   *     Stream.runForEach((n) => Effect.log(n))
   *   )
   * })
   * ```
   */
  readonly stream: <T extends Task.Task.Unary, E = never, R = never>(
    task: T,
    inputs: Inputs<Task.Task.Payload<T>, E, R>,
    options?: MapOptions
  ) => Stream.Stream<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError | E, R>
  /**
   * A snapshot of the pool ({@link Stats}): the queue, the tasks in flight,
   * worker crashes, and each worker's pid, state, load and memory.
   */
  readonly stats: Effect.Effect<Stats>
  /**
   * Snapshots of the pool, one at once and then one every `interval`, for
   * any UI to follow it. The stream ends after the snapshot that finds the
   * pool closed.
   *
   * @example
   * ```ts
   * import * as Effect from "effect/Effect"
   * import * as Stream from "effect/Stream"
   * import { ProcessPool } from "effect-process-pool"
   *
   * const program = Effect.gen(function*() {
   *   const pool = yield* ProcessPool.ProcessPool
   *   yield* pool.statsStream("1 second").pipe(
   *     Stream.runForEach((s) => Effect.log(`${s.queued} queued, ${s.running} running`))
   *   )
   * })
   * ```
   */
  readonly statsStream: (interval: Duration.Input) => Stream.Stream<Stats>
}

// ---------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------

/**
 * Builds a pool in the current scope. It completes once every worker is
 * ready, and fails with `WorkerStartError` if one cannot start. Closing the
 * scope stops the pool: see {@link Options} `shutdown`.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const pool = yield* ProcessPool.make({ worker: new URL("./worker.ts", import.meta.url), size: 2 })
 *   return yield* pool.submit(Square, 4)
 * }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Service, WorkerStartError | InvalidOption, Scope.Scope> =>
  Effect.map(makeLocal(options), makeService)

/**
 * Builds a pool whose workers come from `hooks.spawn` (child processes by
 * default) and whose events also go to `hooks.events`.
 *
 * @internal
 */
export const makeWith = (
  options: Options,
  hooks?: Hooks
): Effect.Effect<Service, WorkerStartError | InvalidOption, Scope.Scope> =>
  Effect.map(makeLocal(options, hooks), makeService)

/**
 * A layer that provides a {@link ProcessPool}. Building it spawns the workers
 * and waits until they are ready; releasing it stops them all.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { NodeRuntime } from "@effect/platform-node"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const main = Effect.gen(function*() {
 *   const results = yield* ProcessPool.map(Square, [1, 2, 3, 4, 5])
 *   yield* Effect.log(results) // [1, 4, 9, 16, 25]
 * })
 *
 * main.pipe(Effect.provide(ProcessPool.layer({ worker: import.meta.url })), NodeRuntime.runMain)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<ProcessPool, WorkerStartError | InvalidOption> => {
  // At once, while the module is still being imported: a worker of a module that builds a pool of itself stops here.
  refuseOwnPool(options)
  return Layer.effect(ProcessPool, make(options))
}

/** `refusePoolOfItself` for options whose `worker` may be anything: a bad one is refused when the layer is built. */
const refuseOwnPool = (options: Options): void => {
  const worker: unknown = options?.worker
  if (worker instanceof URL || (typeof worker === "string" && worker !== "")) refusePoolOfItself(toModuleUrl(worker))
}

/**
 * Options of {@link layerTest}: those of {@link layer}, with the worker
 * module or its handlers themselves.
 *
 * @since 0.1.0
 * @category models
 */
export interface TestOptions extends Omit<Options, "worker" | "isolation"> {
  /**
   * The worker module, as {@link layer} takes it (its default export is
   * imported in this process), or its `Worker.handlers(...)` value itself.
   */
  readonly worker: string | URL | Worker.Handlers<never>
}

/**
 * Builds a {@link layerTest} pool in the current scope.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 * import { Square } from "./tasks.ts"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const pool = yield* ProcessPool.makeTest({ worker: new URL("./worker.ts", import.meta.url) })
 *   return yield* pool.submit(Square, 4)
 * }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeTest = (
  options: TestOptions
): Effect.Effect<Service, WorkerStartError | InvalidOption, Scope.Scope> =>
  Effect.gen(function*() {
    const memory = yield* Effect.promise(() => import("./internal/memory/spawn.ts"))
    const local: Options = { ...options, worker: isHandlers(options.worker) ? "memory:" : options.worker }
    const invalid = checkPool(local)
    if (invalid !== undefined) return yield* invalid
    const served = yield* memory.loadHandlers(options.worker)
    const spawn = yield* memory.makeMemorySpawn(served, {
      workerConcurrency: options.workerConcurrency ?? 1,
      logLevel: yield* References.MinimumLogLevel
    }, yield* Effect.scope)
    return makeService(yield* makeLocal(local, { spawn }))
  })

/**
 * The {@link ProcessPool} service for your own tests: the worker module's
 * handlers, with their `Worker.provide` services, run in this process. Every
 * payload, result and error still goes through the same encoding as on the
 * wire, so a Schema mistake fails in a unit test as it would in production;
 * the service and its errors are the same. It starts no process, so a test of
 * code that calls the pool runs in milliseconds, under `it.effect` too.
 *
 * What a process gives and memory cannot: a handler that blocks the event
 * loop blocks the test; a crash, a hang or `process.exit` takes the test
 * runner with it; `maxWorkerMemory`, `execArgv`, `env` and the other options
 * of processes do nothing.
 *
 * @example
 * ```ts
 * import { it, expect } from "@effect/vitest"
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 * import { Square } from "./tasks.ts"
 *
 * it.effect("squares", () =>
 *   Effect.gen(function*() {
 *     expect(yield* ProcessPool.map(Square, [1, 2, 3])).toEqual([1, 4, 9])
 *   }).pipe(Effect.provide(ProcessPool.layerTest({ worker: new URL("./worker.ts", import.meta.url) }))))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerTest = (options: TestOptions): Layer.Layer<ProcessPool, WorkerStartError | InvalidOption> =>
  Layer.effect(ProcessPool, makeTest(options))

// On a Node without import.meta.main, a single-file program guarded by it does nothing: say so at exit.
explainSilentExit(process.versions.node)

/**
 * Runs one task in a worker of the pool in context.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.submit(Fib, 30, { timeout: "10 seconds" })
 * // Effect<number, FibTooLarge | PoolError, ProcessPool>
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const submit = <T extends Task.Task.Any>(task: T, ...args: SubmitArgs<T>): Submitted<T, ProcessPool> =>
  (task.stream
    ? Stream.unwrap(Effect.map(ProcessPool, (pool) => pool.submit(task, ...args) as Stream.Stream<any, any>))
    : ProcessPool.use((pool) => pool.submit(task, ...args) as Effect.Effect<any, any>)) as Submitted<T, ProcessPool>

/**
 * A snapshot of the pool in context: queue length, tasks in flight, worker
 * crashes, and each worker's pid, state, load and memory.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = Effect.gen(function*() {
 *   const { workers } = yield* ProcessPool.stats
 *   yield* Effect.log(workers.map((w) => w.pid))
 * })
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const stats: Effect.Effect<Stats, never, ProcessPool> = ProcessPool.use((pool) => pool.stats)

/**
 * Snapshots of the pool in context, one at once and then one every
 * `interval`, until the pool is closed: for a progress bar or a dashboard.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as Stream from "effect/Stream"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const follow = ProcessPool.statsStream("500 millis").pipe(
 *   Stream.runForEach((s) => Effect.log(`${s.queued} queued, ${s.running} running`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const statsStream = (interval: Duration.Input): Stream.Stream<Stats, never, ProcessPool> =>
  Stream.unwrap(Effect.map(ProcessPool, (pool) => pool.statsStream(interval)))

/**
 * Runs a task over many payloads in the pool in context. Fails fast.
 *
 * @example
 * ```ts
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.map(Square, [1, 2, 3], { ordered: true })
 * // Effect<Array<number>, PoolError, ProcessPool>
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const map = <T extends Task.Task.Unary>(
  task: T,
  inputs: Iterable<Task.Task.Payload<T>>,
  options?: MapOptions
): Effect.Effect<Array<Task.Task.Success<T>>, Task.Task.Failure<T> | PoolError, ProcessPool> =>
  ProcessPool.use((pool) => pool.map(task, inputs, options))

/**
 * Runs a task over many payloads in the pool in context, and returns every
 * item's `Exit`.
 *
 * @example
 * ```ts
 * import * as Exit from "effect/Exit"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.mapExits(Fib, [10, 95, 20])
 * // Effect<Array<Exit<number, FibTooLarge | PoolError>>, InvalidOption, ProcessPool>
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const mapExits = <T extends Task.Task.Unary>(
  task: T,
  inputs: Iterable<Task.Task.Payload<T>>,
  options?: MapOptions
): Effect.Effect<
  Array<Exit.Exit<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError>>,
  InvalidOption,
  ProcessPool
> => ProcessPool.use((pool) => pool.mapExits(task, inputs, options))

/**
 * Runs a task over an iterable or a stream in the pool in context: a lazy,
 * bounded stream of results.
 *
 * @example
 * ```ts
 * import * as Stream from "effect/Stream"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const results = ProcessPool.stream(Square, Stream.range(1, 1_000_000), { ordered: false })
 * ```
 *
 * @since 0.1.0
 * @category accessors
 */
export const stream = <T extends Task.Task.Unary, E = never, R = never>(
  task: T,
  inputs: Inputs<Task.Task.Payload<T>, E, R>,
  options?: MapOptions
): Stream.Stream<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError | E, R | ProcessPool> =>
  Stream.unwrap(Effect.map(ProcessPool, (pool) => pool.stream(task, inputs, options)))

// ---------------------------------------------------------------------------
// Beyond one machine: effect/cluster
// ---------------------------------------------------------------------------

/**
 * Options of {@link layerRunner}: the tasks the runner serves, and the
 * options of its local pool, as {@link layer} takes them.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunnerOptions extends Options {
  /** The task contracts this runner serves. Its `worker` module must have their handlers. */
  readonly tasks: ReadonlyArray<Task.Task.Any>
  /** The entity type that serves them. Defaults to `"effect-process-pool"`; the callers must use the same. */
  readonly entity?: string | undefined
  /**
   * Use the engine's persisted messages: at least once, and a caller that
   * restarts can pick up its replies. A task whose runner dies is then run
   * again, idempotent or not. Defaults to false: volatile messages, and a task
   * whose runner dies is never run twice unless it is idempotent.
   */
  readonly persisted?: boolean | undefined
  /**
   * The longest this runner's process may stand still (stopped, frozen,
   * starved of CPU) and still start the tasks it took before (at least 100
   * ms). A runner that
   * stood still longer may have lost their shards to another runner, whose
   * callers were then told the work was lost: those tasks end with
   * `WorkerCrashed` without running here. It should be at most the engine's
   * `shardLockExpiration` minus its `shardLockRefreshInterval`. Defaults to
   * that difference when `ShardingConfig` is in the layer's context, else to
   * 2 seconds.
   */
  readonly maxStall?: Duration.Input | undefined
}

/**
 * Options of {@link layerCluster}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClusterOptions {
  /** The task contracts to send to the runners. A task not listed fails with `TaskNotServed`. */
  readonly tasks: ReadonlyArray<Task.Task.Any>
  /** The entity type of the runners. Defaults to `"effect-process-pool"`. */
  readonly entity?: string | undefined
  /** As on the runners: see {@link RunnerOptions} `persisted`. */
  readonly persisted?: boolean | undefined
  /**
   * How many entity ids tasks without a key spread over, round robin. Each
   * id lives on one shard, and the engine spreads shards over the runners.
   * Defaults to 64.
   */
  readonly spread?: number | undefined
  /** How many chunks of one `map` may be in flight at once. Defaults to 16. */
  readonly concurrency?: number | undefined
  /**
   * How long a call waits while the cluster's storage (its PostgreSQL) does
   * not answer, before it fails with `StorageUnreachable`; new calls then fail
   * at once until it answers again. To know, the caller asks the storage
   * (`SELECT 1`) every half second, through the `SqlClient` of the layer's
   * context, as the engine's storage has it; without one, calls wait as the
   * engine does. Defaults to 5 seconds.
   */
  readonly storageTimeout?: Duration.Input | undefined
  /** The `pool` attribute of the caller's metrics, as {@link Options} `name`. Defaults to `"default"`. */
  readonly name?: string | undefined
  /**
   * Count the caller's `process_pool_tasks_total` by outcome, in the `Metric`
   * registry of the context the layer is built in. Defaults to true. The
   * runners' local pools record their own metrics as well.
   */
  readonly metrics?: boolean | undefined
}

/**
 * A layer that serves tasks on an `effect/cluster` runner: it registers one
 * entity type whose every message runs in the runner's own local pool, built
 * from the options as {@link layer} builds one. It needs `Sharding`, such as
 * `NodeClusterSocket.layer` gives. With an `SqlClient` in context (the one
 * the cluster's SQL storage uses), the runner records the id of every message
 * it starts, so that a message that the engine delivers again after its runner
 * died fails with `WorkerCrashed` rather than running twice.
 *
 * @example
 * ```ts
 * import { NodeClusterSocket, NodeRuntime } from "@effect/platform-node"
 * import { PgClient } from "@effect/sql-pg"
 * import * as Layer from "effect/Layer"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const Runner = ProcessPool.layerRunner({ tasks: [Square], worker: new URL("./worker.ts", import.meta.url) }).pipe(
 *   Layer.provideMerge(NodeClusterSocket.layer({ shardingConfig: { runnerAddress: Option.some(address) } })),
 *   Layer.provideMerge(PgClient.layer({ url: Redacted.make(databaseUrl) }))
 * )
 * Layer.launch(Runner).pipe(NodeRuntime.runMain)
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerRunner = (
  options: RunnerOptions
): Layer.Layer<never, WorkerStartError | InvalidOption, Sharding> => {
  refuseOwnPool(options)
  return Layer.unwrap(Effect.map(loadRunner, (runner) => runner.layerRunner(options)))
}

/**
 * The {@link ProcessPool} service, backed by the runners of an
 * `effect/cluster`: `submit`, `map`, `mapExits` and `stream` work as they do
 * locally. `map` sends chunks and spreads them over the runners; a `key` keeps
 * related tasks on one runner. Typed failures arrive as their class and
 * defects keep the remote stack. An idempotent task whose runner dies runs
 * again elsewhere, following its `retry` schedule; any other fails with
 * `WorkerCrashed` naming the lost runner.
 *
 * @example
 * ```ts
 * import { NodeClusterSocket } from "@effect/platform-node"
 * import * as Effect from "effect/Effect"
 * import * as Layer from "effect/Layer"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const Pool = ProcessPool.layerCluster({ tasks: [Square] }).pipe(
 *   Layer.provide(NodeClusterSocket.layer({ clientOnly: true })),
 *   Layer.provide(PgClient.layer({ url: Redacted.make(databaseUrl) }))
 * )
 * const program = ProcessPool.map(Square, [1, 2, 3]).pipe(Effect.provide(Pool))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerCluster = (options: ClusterOptions): Layer.Layer<ProcessPool, InvalidOption, Sharding> =>
  Layer.effect(
    ProcessPool,
    Effect.flatMap(loadCaller, (caller) => Effect.map(caller.makeCluster(options), makeService))
  )

/**
 * The loggers in context, each made to say a line that repeats once, then
 * at a falling rate: after 1 s, 2 s, 4 s, … up to once a minute, each time
 * with how many times it was said meanwhile. A line not said for 5 minutes
 * starts over. The tracer's logger (span events) is left as it is. Give
 * it to the cluster's own layer on runners and callers, so that it quiets
 * the engine and nothing else: with its storage down, the engine says
 * "Shard lock storage is still unhealthy" every second, on every runner.
 *
 * @example
 * ```ts
 * import { NodeClusterSocket } from "@effect/platform-node"
 * import * as Layer from "effect/Layer"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const Runner = ProcessPool.layerRunner({ tasks: [Square], worker: import.meta.url }).pipe(
 *   Layer.provideMerge(
 *     NodeClusterSocket.layer({ storage: "sql" }).pipe(Layer.provide(ProcessPool.layerQuietRepeats))
 *   )
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerQuietRepeats: Layer.Layer<never> = Layer.unwrap(
  // Loaded when used: a local pool never pays for `effect/Logger` and what it imports.
  Effect.map(Effect.promise(() => import("./internal/telemetry/repeats.ts")), (module) => module.layerQuietRepeats)
)

// The cluster's code is loaded by the cluster layers alone: a local pool never pays for it.
const loadRunner = Effect.promise(() => import("./internal/cluster/runner.ts"))
const loadCaller = Effect.promise(() => import("./internal/cluster/caller.ts"))
