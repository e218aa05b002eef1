/**
 * The local backend: a fleet of worker processes (or, for `layerTest`,
 * workers served in this process) behind one dispatcher. It builds the
 * supervisor, the dispatcher, the pool's telemetry and the caller's client,
 * and gives them to the service as a `Backend`.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as References from "effect/References"
import type * as Scope from "effect/Scope"
import type { InvalidOption, WorkerStartError } from "../../PoolError.ts"
import type { Options, Stats } from "../../ProcessPool.ts"
import { poolClockOf } from "../clock.ts"
import { checkPool, resolve } from "../options.ts"
import type { Backend } from "../service/backend.ts"
import { combine, type PoolEvents } from "../telemetry/events.ts"
import { makeLogDelivery } from "../telemetry/logs.ts"
import { makePoolMetrics } from "../telemetry/poolMetrics.ts"
import { makeWorkerMetrics } from "../telemetry/workerMetrics.ts"
import { poolBuilt, refusePoolOfItself } from "../wire/guard.ts"
import { prepare as prepareBundle } from "./bundle.ts"
import { makeClient } from "./client.ts"
import { Dispatcher } from "./dispatcher.ts"
import { Supervisor } from "./supervisor.ts"
import { type Limit, type Spawn, spawnProcess, workerMain } from "./workerProcess.ts"
import { spawnThread } from "./workerThread.ts"

/**
 * A thread's heap limit: the smaller of `maxWorkerHeap` and
 * `maxWorkerMemory` (which is a thread's heap limit too), and which of them
 * it is, for `LimitExceeded`.
 */
const threadHeap = (options: Options): { readonly maxHeap: number; readonly heapLimit: Limit["name"] } => {
  const heap = options.maxWorkerHeap ?? Infinity
  const memory = options.maxWorkerMemory ?? Infinity
  if (heap === Infinity && memory === Infinity) return { maxHeap: 0, heapLimit: "maxWorkerHeap" }
  return heap <= memory
    ? { maxHeap: heap, heapLimit: "maxWorkerHeap" }
    : { maxHeap: memory, heapLimit: "maxWorkerMemory" }
}

/** How a local pool's workers are started, and who else hears its events. @internal */
export interface Hooks {
  /** Starts a worker: a child process unless said otherwise. */
  readonly spawn?: Spawn | undefined
  readonly events?: PoolEvents | undefined
}

/**
 * Builds a local pool in the current scope: it completes once its workers
 * are ready. Closing the scope stops it.
 *
 * @internal
 */
export const makeLocal: (
  options: Options,
  hooks?: Hooks
) => Effect.Effect<Backend, WorkerStartError | InvalidOption, Scope.Scope> = Effect.fnUntraced(function*(
  options: Options,
  hooks: Hooks = {}
) {
  const invalid = checkPool(options)
  if (invalid !== undefined) return yield* invalid
  const resolved = resolve(options)
  refusePoolOfItself(resolved.supervisor.moduleUrl)
  poolBuilt()
  const clock = poolClockOf(yield* Effect.clockWith(Effect.succeed))
  const bundle = hooks.spawn === undefined && resolved.bundleDir !== undefined
    ? yield* Effect.promise(() =>
      prepareBundle({
        moduleUrl: resolved.spawn.moduleUrl,
        runtime: workerMain,
        execArgv: resolved.spawn.execArgv,
        cacheDir: resolved.bundleDir!
      })
    )
    : undefined
  // Metrics go to this context's registry; log lines made outside any task go to its loggers.
  const context = yield* Effect.context<never>()
  // The gauges may be read (a scrape) before the dispatcher and the supervisor exist: they read 0 then.
  let built: { readonly dispatcher: Dispatcher; readonly supervisor: Supervisor } | undefined
  const metrics = options.metrics === false ? undefined : makePoolMetrics(context, options.name ?? "default", {
    queued: () => built?.dispatcher.queuedItems() ?? 0,
    inflight: () => built?.dispatcher.inflightItems() ?? 0,
    busyTime: (now) => built?.dispatcher.busyTime(now) ?? 0,
    liveWorkers: () => built?.supervisor.liveWorkers ?? 0
  }, clock)
  const events = combine(
    metrics?.events ?? {},
    makeWorkerMetrics(context),
    makeLogDelivery(context),
    hooks.events ?? {}
  )
  const dispatcher = new Dispatcher(resolved.dispatcher, clock, events)
  // The workers drop the log lines this context's loggers would not take: they never cross the pipe. A
  // caller with another minimum level has it applied to its own tasks.
  const logLevel = yield* References.MinimumLogLevel
  const spawnOptions = { ...resolved.spawn, worker: { ...resolved.spawn.worker, logLevel } }
  const spawn = hooks.spawn ?? (resolved.isolation === "thread"
    ? spawnThread({
      ...spawnOptions,
      bundle,
      // Unless given, a thread takes the flags of this process, as `node:worker_threads` gives them.
      execArgv: options.execArgv,
      ...threadHeap(options)
    })
    : spawnProcess({ ...spawnOptions, bundle }))
  const supervisor = new Supervisor(
    resolved.supervisor,
    dispatcher,
    spawn,
    clock,
    events
  )
  built = { dispatcher, supervisor }
  if (metrics !== undefined) yield* Effect.addFinalizer(() => Effect.sync(metrics.stop))
  yield* Effect.addFinalizer(() =>
    Effect.callback<void>((resume) => {
      supervisor.shutdown(resolved.shutdown, resolved.shutdownTimeout, () => resume(Effect.void))
    })
  )
  yield* Effect.callback<void, WorkerStartError>((resume) => {
    supervisor.start((error) => resume(error === undefined ? Effect.void : Effect.fail(error)))
  })

  return {
    ...makeClient(dispatcher, resolved.maxFrameSize, resolved.streamWindow, events, logLevel),
    stats: Effect.sync((): Stats => ({
      ...dispatcher.stats(),
      crashes: supervisor.crashes,
      workers: supervisor.workerStats()
    })),
    unsent: events.unsent === undefined
      ? undefined
      : (task, items) => events.unsent!(task, items, Fiber.getCurrent()?.context),
    concurrency: resolved.maxSize * 2 + 2,
    chunking: { targetMillis: 5, maxItems: 4096 }
  } satisfies Backend
})
