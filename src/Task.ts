/**
 * Task contracts: a tag with Schemas for its payload, its success and its typed
 * failure, shared by the parent and every worker.
 *
 * The three Schemas are the same three an `Rpc` from `effect/rpc` holds, so a
 * task maps one to one onto an RPC.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import * as Predicate from "effect/Predicate"
import type * as Rpc from "effect/rpc/Rpc"
import type * as RpcSchema from "effect/rpc/RpcSchema"
import type * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId = "~effect-process-pool/Task" as const

/**
 * A Schema that can cross the process boundary: it needs no services to
 * encode or decode.
 *
 * @since 0.1.0
 * @category models
 */
export interface AnySchema extends Schema.Top {
  readonly DecodingServices: never
  readonly EncodingServices: never
}

/**
 * A task contract. `Streams` is `true` for a streaming task: its handler
 * returns a `Stream`, and `submit` returns one.
 *
 * @example
 * ```ts
 * import * as Schema from "effect/Schema"
 * import { Task } from "effect-process-pool"
 *
 * const Square = Task.make("Square", { payload: Schema.Number, success: Schema.Number })
 * const Count = Task.make("Count", { payload: Schema.Number, success: Schema.Number, stream: true })
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Task<
  out Tag extends string,
  in out Payload extends AnySchema,
  in out Success extends AnySchema,
  in out Failure extends AnySchema,
  out Streams extends boolean = false
> extends Pipeable {
  readonly [TypeId]: typeof TypeId
  readonly _tag: Tag
  readonly payloadSchema: Payload
  readonly successSchema: Success
  readonly failureSchema: Failure
  /** Whether running the task twice is harmless. Only idempotent tasks are retried. */
  readonly idempotent: boolean
  /** How to retry the task when its worker crashes; `undefined` for never. */
  readonly retry: Schedule.Schedule<unknown, unknown> | undefined
  /** How its values cross the process boundary: see {@link make}. */
  readonly serialization: "json" | "binary"
  /** Whether byte arrays move between threads rather than being copied: see `Task.make`. */
  readonly transfer: boolean
  /** Whether the task streams its results: its handler returns a `Stream` of `Success` values. */
  readonly stream: Streams
  /**
   * Binds the worker-side implementation of this task. Pass the result to
   * `Worker.handlers(...)`. A streaming task's handler returns a `Stream`.
   */
  handler<R = never>(
    run: (
      payload: Payload["Type"]
    ) => Streams extends true ? Stream.Stream<Success["Type"], Failure["Type"], R>
      : Effect.Effect<Success["Type"], Failure["Type"], R>
  ): Handler<this, R>
}

/**
 * Type helpers for tasks.
 *
 * @since 0.1.0
 * @category models
 */
export declare namespace Task {
  /**
   * Any task, streaming or not.
   *
   * @since 0.1.0
   */
  export type Any = Task<string, any, any, any, boolean>
  /**
   * Any task that answers with one value: what `map`, `mapExits` and `stream` take.
   *
   * @since 0.1.0
   */
  export type Unary = Task<string, any, any, any, false>
  /**
   * Any streaming task.
   *
   * @since 0.1.0
   */
  export type Streaming = Task<string, any, any, any, true>
  /**
   * The decoded payload type of a task.
   *
   * @since 0.1.0
   */
  export type Payload<T> = T extends Task<any, infer P, any, any, any> ? P["Type"] : never
  /**
   * The decoded success type of a task.
   *
   * @since 0.1.0
   */
  export type Success<T> = T extends Task<any, any, infer S, any, any> ? S["Type"] : never
  /**
   * The decoded typed-failure type of a task.
   *
   * @since 0.1.0
   */
  export type Failure<T> = T extends Task<any, any, any, infer F, any> ? F["Type"] : never
}

/**
 * A task bound to its worker-side implementation.
 *
 * @since 0.1.0
 * @category models
 */
export interface Handler<out T extends Task.Any, out R> {
  /** The task this handler serves. */
  readonly task: T
  /**
   * The handler itself: takes the decoded payload, and gives the result to
   * encode: an `Effect`, or a `Stream` of items for a streaming task.
   */
  readonly run: (payload: any) => Effect.Effect<any, any, R> | Stream.Stream<any, any, R>
}

/**
 * Type helpers for handlers.
 *
 * @since 0.1.0
 * @category models
 */
export declare namespace Handler {
  /**
   * Any handler.
   *
   * @since 0.1.0
   */
  export type Any = Handler<Task.Any, any>
  /**
   * The services a handler needs.
   *
   * @since 0.1.0
   */
  export type Services<H> = H extends Handler<any, infer R> ? R : never
}

const TaskProto = {
  [TypeId]: TypeId,
  pipe() {
    return pipeArguments(this, arguments)
  },
  handler(this: Task.Any, run: (payload: any) => any): Handler.Any {
    return { task: this, run }
  }
}

/**
 * Defines a task contract. `payload` and `success` default to `Schema.Void`,
 * and `failure` to `Schema.Never`: a task without typed failures.
 *
 * @example
 * ```ts
 * import * as Effect from "effect/Effect"
 * import * as Schema from "effect/Schema"
 * import { Task } from "effect-process-pool"
 *
 * class FibTooLarge extends Schema.TaggedError<FibTooLarge>()("FibTooLarge", { n: Schema.Number }) {}
 *
 * const Fib = Task.make("Fib", { payload: Schema.Int, success: Schema.Int, failure: FibTooLarge })
 *
 * // A task that is safe to run twice may be retried when its worker crashes:
 * const Thumbnail = Task.make("Thumbnail", {
 *   payload: Schema.String,
 *   success: Schema.Uint8Array,
 *   idempotent: true,
 *   retry: Schedule.recurs(2)
 * })
 *
 * // In the worker module:
 * const handler = Fib.handler((n) => n > 90 ? Effect.fail(new FibTooLarge({ n })) : Effect.succeed(fib(n)))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <
  const Tag extends string,
  Payload extends AnySchema = Schema.Void,
  Success extends AnySchema = Schema.Void,
  Failure extends AnySchema = Schema.Never,
  const Streams extends boolean = false
>(
  tag: Tag,
  options: {
    readonly payload?: Payload | undefined
    readonly success?: Success | undefined
    readonly failure?: Failure | undefined
    /** Running the task twice is harmless: it may be retried. */
    readonly idempotent?: boolean | undefined
    /**
     * Retries the task on `WorkerCrashed`, never on a typed failure, following
     * this schedule. Only for tasks marked `idempotent`.
     */
    readonly retry?: Schedule.Schedule<unknown, any> | undefined
    /**
     * How values cross the process boundary. `"json"` (the default) sends each
     * Schema's JSON encoding: the fastest for numbers, strings and plain
     * objects. `"binary"` sends each Schema's own encoded form through V8's
     * serializer, so a `Uint8Array` travels as raw bytes rather than base64,
     * and `Date`, `BigInt`, `Map` and `Set` need no conversion: use it for
     * tasks that carry bytes.
     */
    readonly serialization?: "json" | "binary" | undefined
    /**
     * With `serialization: "binary"`: byte arrays of 64 KiB or more in the
     * payload of a `submit`, or in a result, are moved rather than copied.
     * Such an array is gone from the sender when the call is made (or the
     * result returned): its length becomes 0. On worker threads the bytes
     * then cross to the other thread without a copy; worker processes copy
     * them through their pipe. An array that is a view of part of a larger
     * buffer is copied, since moving it would take the rest of the buffer.
     * A task sent ahead to a thread that dies before starting it, and the
     * items of a `map` chunk not started when its worker dies, fail with
     * `WorkerCrashed` rather than being sent again, since their bytes went
     * with the message; for the same reason such a task cannot take `retry`.
     * An array that was moved away already is refused (`SerializationError`).
     */
    readonly transfer?: boolean | undefined
    /**
     * A streaming task: its handler returns a `Stream` of `success` values,
     * and `submit` returns a `Stream` that pulls them across the process
     * boundary, a bounded window ahead of the consumer. Each item crosses
     * through the `success` Schema. `map`, `mapExits` and `stream` do not take
     * streaming tasks.
     */
    readonly stream?: Streams | undefined
  }
): Task<Tag, Payload, Success, Failure, Streams> => {
  if (options.retry !== undefined && options.idempotent !== true) {
    throw new Error(
      `Task.make("${tag}"): retry is only for tasks that are safe to run twice; add idempotent: true if this one is`
    )
  }
  if (options.transfer === true && options.serialization !== "binary") {
    throw new Error(`Task.make("${tag}"): transfer moves byte arrays, which only serialization: "binary" carries`)
  }
  if (options.transfer === true && options.retry !== undefined) {
    throw new Error(
      `Task.make("${tag}"): a task with transfer cannot take retry: its payload's bytes are gone after the first attempt`
    )
  }
  const self = Object.create(TaskProto)
  self._tag = tag
  self.payloadSchema = options.payload ?? Schema.Void
  self.successSchema = options.success ?? Schema.Void
  self.failureSchema = options.failure ?? Schema.Never
  self.idempotent = options.idempotent === true
  self.retry = options.retry
  self.serialization = options.serialization ?? "json"
  self.transfer = options.transfer === true
  self.stream = options.stream === true
  return self
}

/**
 * Tells whether a value is a task contract.
 *
 * @example
 * ```ts
 * import { Task } from "effect-process-pool"
 *
 * Task.isTask(Square) // true
 * ```
 *
 * @since 0.1.0
 * @category guards
 */
export const isTask = (u: unknown): u is Task.Any => Predicate.hasProperty(u, TypeId)

/**
 * The `Rpc` of `effect/rpc` that a task contract maps onto.
 *
 * @since 0.1.0
 * @category models
 */
export type ToRpc<T extends Task.Any> = T extends Task<infer Tag, infer P, infer S, infer F, infer Streams>
  ? Streams extends true ? Rpc.Rpc<Tag, P, RpcSchema.Stream<S, F>, Schema.Never>
  : Rpc.Rpc<Tag, P, S, F>
  : never

// `effect/rpc` is loaded on the first call only: a local pool and its workers never pay for it.
let rpcModule: typeof Rpc | undefined
const loadRpc = (): typeof Rpc =>
  rpcModule ??= process.getBuiltinModule("node:module").createRequire(import.meta.url)("effect/rpc/Rpc")

/**
 * The `Rpc` of `effect/rpc` with the task's tag and Schemas: its payload, its
 * success, its failure as the RPC's `error`, and `stream: true` for a
 * streaming task. Defects cross with their stack. This is how the cluster
 * layers serve a task; use it to serve or call the same contract with
 * `RpcServer` or `RpcClient` as well.
 *
 * @example
 * ```ts
 * import * as Schema from "effect/Schema"
 * import * as RpcGroup from "effect/rpc/RpcGroup"
 * import { Task } from "effect-process-pool"
 *
 * const Square = Task.make("Square", { payload: Schema.Number, success: Schema.Number })
 * const group = RpcGroup.make(Task.toRpc(Square))
 * ```
 *
 * @since 0.1.0
 * @category conversions
 */
export const toRpc = <T extends Task.Any>(task: T): ToRpc<T> =>
  loadRpc().make(task._tag, {
    payload: task.payloadSchema,
    success: task.successSchema,
    error: task.failureSchema,
    defect: defectWithStack(),
    stream: task.stream
  }) as any

let defect: Schema.Defect | undefined
const defectWithStack = (): Schema.Defect => defect ??= Schema.Defect({ includeStack: true })
