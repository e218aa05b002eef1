/**
 * The errors of the pool itself, as opposed to the typed failures of tasks.
 *
 * Every class is a flat `Schema.TaggedError`, so `Effect.catchTag` works on
 * each of them, and each message says what happened and what to do next.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * The worker that was running the task died before it answered.
 *
 * Only the tasks the worker was running fail this way: tasks that had been sent
 * ahead to it but had not started go back to the queue. The worker is replaced.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.submit(Square, 3).pipe(
 *   Effect.catchTag("WorkerCrashed", (e) => Effect.succeed(-1))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkerCrashed extends Schema.TaggedError<WorkerCrashed>()("WorkerCrashed", {
  /** The process id of the worker that died. */
  pid: Schema.Number,
  /** Its exit code, or `null` when a signal ended it. */
  exitCode: Schema.NullOr(Schema.Number),
  /** The signal that ended it, such as `"SIGKILL"`, or `null`. */
  signal: Schema.NullOr(Schema.String),
  /** The tag of the task that was running. */
  task: Schema.String,
  /** Why the worker ended, when the pool itself ended it. */
  reason: Schema.optional(Schema.String),
  /**
   * Through the cluster: the address of the runner that was lost while it
   * held the task. `pid` is then that runner's process id.
   */
  runner: Schema.optional(Schema.String)
}) {
  override get message(): string {
    if (this.runner !== undefined) {
      return `Task "${this.task}" was started by cluster runner ${this.runner} (pid ${this.pid}), and was delivered ` +
        `again before it answered` + (this.reason === undefined ? "" : ` (${this.reason})`) + `. It may have run in ` +
        `part, and was not run again; mark it idempotent with a retry schedule if running it twice is harmless.`
    }
    const how = this.signal !== null ? `was killed by ${this.signal}` : `exited with code ${this.exitCode}`
    const why = this.reason === undefined ? "" : ` (${this.reason})`
    return `Worker ${this.pid} ${how}${why} while running task "${this.task}". ` +
      `The worker was replaced and other tasks were not affected. ` +
      `Check the worker's stderr above for the cause; retry the task if it is idempotent.`
  }
}

/**
 * A worker process could not start: its module threw on import, has no
 * `Worker.handlers(...)` default export, its services failed to build, or it
 * did not become ready in time. `stderr` holds the end of what the child wrote.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * // Building the layer fails with WorkerStartError when workers cannot start.
 * const program = Effect.gen(function*() {
 *   const pool = yield* ProcessPool.ProcessPool
 * }).pipe(
 *   Effect.provide(ProcessPool.layer({ worker: "./broken.ts" })),
 *   Effect.catchTag("WorkerStartError", (e) => Effect.log(e.stderr))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class WorkerStartError extends Schema.TaggedError<WorkerStartError>()("WorkerStartError", {
  message: Schema.String,
  stderr: Schema.String
}) {}

/**
 * The workers' module serves no handler for this task's tag. Add
 * `task.handler(...)` to the module's `Worker.handlers(...)` default export.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.submit(Unserved, 1).pipe(
 *   Effect.catchTag("TaskNotServed", (e) => Effect.log(`no handler for ${e.task}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class TaskNotServed extends Schema.TaggedError<TaskNotServed>()("TaskNotServed", {
  task: Schema.String,
  /**
   * Who does not serve it: the worker module (absent), the cluster's
   * runners (`"runners"`: no runner lists it in `layerRunner({ tasks })`),
   * or this caller (`"caller"`: `layerCluster({ tasks })` does not list it).
   */
  where: Schema.optional(Schema.Literals(["runners", "caller"]))
}) {
  override get message(): string {
    switch (this.where) {
      case "runners":
        return `No runner of the cluster serves task "${this.task}". Add ${this.task} to the tasks of ` +
          `ProcessPool.layerRunner({ tasks }) on the runners, and its handler to their worker module.`
      case "caller":
        return `Task "${this.task}" is not among the tasks of ProcessPool.layerCluster({ tasks }) on this caller. ` +
          `Add it there, as on the runners' layerRunner({ tasks }).`
      default:
        return `The worker module serves no handler for task "${this.task}". ` +
          `Add ${this.task}.handler(...) to the Worker.handlers(...) default export of the worker module.`
    }
  }
}

/**
 * A payload or a result did not fit its Schema. With `direction: "payload"` the
 * payload was rejected before it was sent; with `direction: "result"` the
 * worker's answer could not be encoded or decoded. `issue` is the Schema's own
 * description of the mismatch.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.submit(Square, "3" as any).pipe(
 *   Effect.catchTag("SerializationError", (e) => Effect.log(e.direction, e.issue))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class SerializationError extends Schema.TaggedError<SerializationError>()("SerializationError", {
  task: Schema.String,
  direction: Schema.Literals(["payload", "result"]),
  issue: Schema.String,
  /**
   * Where it failed: `"caller"` (the payload was encoded, or the result
   * decoded, in the calling process) or `"worker"` (the worker decoded the
   * payload or encoded the result). Absent means `"caller"`.
   */
  side: Schema.optional(Schema.Literals(["caller", "worker"]))
}) {
  override get message(): string {
    const worker = this.side === "worker"
    const what = this.direction === "payload"
      ? worker
        ? `The payload of task "${this.task}" was sent, but the worker could not decode it with its payload Schema ` +
          `(does the worker load a different version of the Schema, or one that needs services?)`
        : `The payload of task "${this.task}" does not fit its payload Schema, so it was not sent`
      : worker
      ? `The worker could not encode the result of task "${this.task}" with its success or failure Schema`
      : `The result of task "${this.task}" came back from the worker, but does not decode with its success or ` +
        `failure Schema`
    return `${what}: ${this.issue}`
  }
}

/**
 * Work was submitted after the pool's scope began to close, or the pool was
 * closed with `shutdown: "interrupt"` while the task was still queued or
 * running.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.submit(Square, 3).pipe(
 *   Effect.catchTag("PoolClosed", () => Effect.succeed(0))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolClosed extends Schema.TaggedError<PoolClosed>()("PoolClosed", {
  task: Schema.String,
  /**
   * `"closing"`: the pool's scope is closing, and it finishes or stops what it
   * holds; `"closed"`: the pool has stopped and its workers are gone. Absent
   * means `"closing"`.
   */
  state: Schema.optional(Schema.Literals(["closing", "closed"]))
}) {
  override get message(): string {
    return this.state === "closed"
      ? `Task "${this.task}" was not run because the process pool is closed: its scope has ended and its workers ` +
        `are gone. Submit work only while the pool's scope is open, or build a new pool.`
      : `Task "${this.task}" was not run to completion because the process pool is closing. ` +
        `Submit work only while the pool's scope is open.`
  }
}

/**
 * The queue was full and the pool was built with `queuePolicy: "reject"`.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.submit(Square, 3).pipe(
 *   Effect.catchTag("QueueFull", () => Effect.log("shed load"))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class QueueFull extends Schema.TaggedError<QueueFull>()("QueueFull", {
  task: Schema.String,
  maxQueue: Schema.Number
}) {
  override get message(): string {
    return `Task "${this.task}" was rejected: ${this.maxQueue} tasks are already queued. ` +
      `Retry later, raise maxQueue, or use queuePolicy "wait" for back pressure.`
  }
}

/**
 * The per-call `timeout` elapsed. On a local pool it counts from when the
 * task started in its worker; through the cluster (`where: "cluster"`), from
 * the call, including any wait for a runner. The work was stopped as if the
 * caller had been interrupted.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.submit(Slow, 3, { timeout: "1 second" }).pipe(
 *   Effect.catchTag("TaskTimeout", () => Effect.succeed(0))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class TaskTimeout extends Schema.TaggedError<TaskTimeout>()("TaskTimeout", {
  task: Schema.String,
  /** The timeout, in milliseconds. */
  timeout: Schema.Number,
  /** `"cluster"`: counted from the call, through the cluster; absent: from the start in a local worker. */
  where: Schema.optional(Schema.Literals(["cluster"]))
}) {
  override get message(): string {
    return this.where === "cluster"
      ? `Task "${this.task}" did not end within its timeout of ${this.timeout} ms, counted from the call through ` +
        `the cluster (a wait for a runner included), and was stopped wherever it was: it may not have started.`
      : `Task "${this.task}" ran longer than its timeout of ${this.timeout} ms and was stopped.`
  }
}

/**
 * An option of the pool, or of one call, has a value that makes no sense:
 * a pool of `size: 0`, a `chunkSize` of -1, a negative `timeout`. It is
 * refused at once, when the layer is built or the call is made, before any
 * process starts or any task is sent. The error names the option, the value
 * it got and what it accepts.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.map(Square, [1, 2, 3], { chunkSize: 0 }).pipe(
 *   Effect.catchTag("InvalidOption", (e) => Effect.log(e.message))
 *   // Invalid option chunkSize: got 0; it takes a whole number of at least 1, or "auto".
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidOption extends Schema.TaggedError<InvalidOption>()("InvalidOption", {
  /** The option, as it is written: `size`, `chunkSize`, `timeout`. */
  option: Schema.String,
  /** The value it got, as text. */
  value: Schema.String,
  /** What it takes. */
  expected: Schema.String
}) {
  override get message(): string {
    return `Invalid option ${this.option}: got ${this.value}; it takes ${this.expected}.`
  }
}

/**
 * Through the cluster: the cluster's storage (its PostgreSQL) could not be
 * reached for longer than the `layerCluster` option `storageTimeout`, while
 * the call waited. Runners cannot prove they hold their shards without it, so
 * they stop their work; a task that had started may have run. New calls fail
 * with it at once until the storage answers again.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.submit(Square, 3).pipe(
 *   Effect.catchTag("StorageUnreachable", (e) => Effect.logWarning(e.message))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class StorageUnreachable extends Schema.TaggedError<StorageUnreachable>()("StorageUnreachable", {
  task: Schema.String,
  /** How long the storage had not answered, in milliseconds. */
  unreachableFor: Schema.Number,
  /** What the storage client said last. */
  reason: Schema.String
}) {
  override get message(): string {
    return `Task "${this.task}" could not go through the cluster: its storage has not answered for ` +
      `${this.unreachableFor} ms (${this.reason}). If the task had started, it may have run. Check that ` +
      `PostgreSQL is up and reachable; calls go through again once it answers.`
  }
}

/**
 * A task passed a limit its pool sets on each worker: `maxWorkerHeap` (its
 * V8 heap), `maxWorkerMemory` on threads (the thread's heap), or
 * `maxCpuTime` (the CPU time it may use). The worker was stopped and
 * replaced; the tasks it held that had not started run on other workers. It
 * is not retried, even when idempotent, since the same task would most
 * likely pass the limit again. Through the cluster, runners and callers must
 * both know this error: upgrade them together.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { ProcessPool } from "effect-process-pool"
 *
 * const program = ProcessPool.submit(Convert, file).pipe(
 *   Effect.catchTag("LimitExceeded", (e) => Effect.logWarning(`${e.limit} passed: ${e.message}`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class LimitExceeded extends Schema.TaggedError<LimitExceeded>()("LimitExceeded", {
  task: Schema.String,
  /** The option that sets the limit that was passed. */
  limit: Schema.Literals(["maxWorkerHeap", "maxWorkerMemory", "maxCpuTime"]),
  /** The limit: bytes for a heap, milliseconds for CPU time. */
  value: Schema.Number,
  /** The process id of the worker (for a thread, its `threadId`). */
  pid: Schema.Number
}) {
  override get message(): string {
    const what = this.limit === "maxCpuTime"
      ? `used more CPU time than maxCpuTime (${this.value} ms)`
      : `grew its heap past ${this.limit} (${Math.round(this.value / 2 ** 20)} MiB)`
    return `Task "${this.task}" ${what} in worker ${this.pid}, which was stopped and replaced. Tasks it had not ` +
      `started run on other workers; this one is not retried.`
  }
}

/**
 * The union of the pool's own errors.
 *
 * @since 0.1.0
 * @category models
 */
export type PoolError =
  | WorkerCrashed
  | WorkerStartError
  | TaskNotServed
  | SerializationError
  | PoolClosed
  | QueueFull
  | TaskTimeout
  | InvalidOption
  | StorageUnreachable
  | LimitExceeded

const classes = [
  WorkerCrashed,
  WorkerStartError,
  TaskNotServed,
  SerializationError,
  PoolClosed,
  QueueFull,
  TaskTimeout,
  InvalidOption,
  StorageUnreachable,
  LimitExceeded
] as const

/**
 * The pool's own errors as one Schema: they cross from a cluster runner to
 * the caller this way, and so can they through a boundary of your own.
 *
 * @example
 * ```ts
 * import * as Schema from "effect/Schema"
 * import { PoolError } from "effect-process-pool"
 *
 * const encoded = Schema.encodeSync(PoolError.PoolErrorSchema)(new PoolError.TaskNotServed({ task: "Fib" }))
 * ```
 *
 * @since 0.1.0
 * @category schemas
 */
export const PoolErrorSchema: Schema.Union<
  readonly [
    typeof WorkerCrashed,
    typeof WorkerStartError,
    typeof TaskNotServed,
    typeof SerializationError,
    typeof PoolClosed,
    typeof QueueFull,
    typeof TaskTimeout,
    typeof InvalidOption,
    typeof StorageUnreachable,
    typeof LimitExceeded
  ]
> = Schema.Union(classes)

/**
 * Tells whether a value is one of the pool's own errors.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import { PoolError } from "effect-process-pool"
 *
 * const program = myEffect.pipe(
 *   Effect.catchIf(PoolError.isPoolError, (e) => Effect.log(e._tag))
 * )
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const isPoolError = (u: unknown): u is PoolError => classes.some((c) => u instanceof c)
