/**
 * The worker side: the handlers a worker module serves, and the services they
 * need.
 *
 * A worker module's default export is `Worker.handlers(...)`. Each worker
 * process imports the module once, builds the services once, and then serves
 * tasks until the pool stops it.
 *
 * @since 0.1.0
 */
import { dual } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Predicate from "effect/Predicate"
import { workerPidKey } from "./internal/wire/protocol.ts"
import type * as Task from "./Task.ts"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId = "~effect-process-pool/Worker/Handlers" as const

/**
 * The handlers a worker module serves, with the layer that builds the services
 * they need. `R` is what is still missing: a module's default export should
 * have `R = never`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Handlers<out R = never> extends Pipeable {
  readonly [TypeId]: {
    /** Carries `R` in the type only; never read at run time. */
    readonly _R: (_: never) => R
  }
  /** The handlers, by task tag. */
  readonly handlers: ReadonlyMap<string, Task.Handler.Any>
  /** The layer given by `Worker.provide`, built once per worker, if any. */
  readonly layer: Layer.Layer<any, any, any> | undefined
}

const HandlersProto = {
  [TypeId]: { _R: (_: never) => _ },
  pipe() {
    return pipeArguments(this, arguments)
  }
}

const makeHandlers = <R>(
  handlers: ReadonlyMap<string, Task.Handler.Any>,
  layer: Layer.Layer<any, any, any> | undefined
): Handlers<R> => {
  const self = Object.create(HandlersProto)
  self.handlers = handlers
  self.layer = layer
  return self
}

/**
 * Collects task handlers into the value a worker module exports as default.
 * Two handlers for one tag are a mistake, and throw when the module loads.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { Worker } from "effect-process-pool"
 * import { Fib, Square } from "./tasks.ts"
 *
 * export default Worker.handlers(
 *   Square.handler((n) => Effect.succeed(n * n)),
 *   Fib.handler((n) => Effect.sync(() => fib(n)))
 * )
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const handlers = <const H extends ReadonlyArray<Task.Handler.Any>>(
  ...handlers: H
): Handlers<Task.Handler.Services<H[number]>> => {
  const map = new Map<string, Task.Handler.Any>()
  for (const handler of handlers) {
    if (map.has(handler.task._tag)) {
      throw new Error(`Worker.handlers: two handlers for task "${handler.task._tag}"; keep exactly one`)
    }
    map.set(handler.task._tag, handler)
  }
  return makeHandlers(map, undefined)
}

/**
 * Supplies services to the handlers. The worker builds the layer once, when it
 * starts; a layer that fails to build is a `WorkerStartError` in the parent.
 * Its finalizers run when the worker is asked to exit.
 *
 * @example
 * ```ts
 * import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
 * import { Worker } from "effect-process-pool"
 *
 * export default Worker.handlers(
 *   Resize.handler((img) => Images.use((images) => images.resize(img)))
 * ).pipe(Worker.provide(Images.layer))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const provide: {
  <ROut, E, RIn>(layer: Layer.Layer<ROut, E, RIn>): <R>(self: Handlers<R>) => Handlers<Exclude<R, ROut> | RIn>
  <R, ROut, E, RIn>(self: Handlers<R>, layer: Layer.Layer<ROut, E, RIn>): Handlers<Exclude<R, ROut> | RIn>
} = dual(
  2,
  <R, ROut, E, RIn>(self: Handlers<R>, layer: Layer.Layer<ROut, E, RIn>): Handlers<Exclude<R, ROut> | RIn> =>
    makeHandlers(self.handlers, self.layer === undefined ? layer : Layer.provideMerge(self.layer, layer))
)

/**
 * Tells whether a value is a `Handlers` value, such as a worker module's
 * default export.
 *
 * @example
 * ```ts
 * import { Worker } from "effect-process-pool"
 *
 * const mod = await import("./worker.ts")
 * Worker.isHandlers(mod.default) // true
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const isHandlers = (u: unknown): u is Handlers<unknown> => Predicate.hasProperty(u, TypeId)

/**
 * A metric of which each worker keeps a series of its own in the parent,
 * told apart by the attribute `process_pool.worker_pid`, rather than one
 * series merged across the workers. Such a series leaves the parent's
 * registry when its worker exits. Use it for a gauge that is not a quantity
 * to add up, such as a worker's heap size or the version it loaded.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as Metric from "effect/Metric"
 * import { Worker } from "effect-process-pool"
 *
 * const heap = Worker.perWorker(Metric.gauge("worker_heap_bytes"))
 *
 * export default Worker.handlers(
 *   Fib.handler((n) => Effect.andThen(Metric.update(heap, process.memoryUsage().heapUsed), Effect.sync(() => fib(n))))
 * )
 * ```
 *
 * @since 0.1.0
 * @category metrics
 */
export const perWorker = <Input, State>(metric: Metric.Metric<Input, State>): Metric.Metric<Input, State> =>
  // The parent sets the pid of the worker that sent each update: the value here is only a placeholder.
  Metric.withAttributes(metric, { [workerPidKey]: String(process.pid) })
