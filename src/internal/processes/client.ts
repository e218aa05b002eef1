/**
 * The caller's side of a task's trip: encode the payload, build the message,
 * hand it to the dispatcher as an `Entry`, and resume the caller with the
 * reply, decoded into the caller's `Exit` (replies.ts). A stream's items are
 * received in stream.ts; retries of idempotent tasks (retry.ts) wrap this.
 *
 * @internal
 */
import * as Channel from "effect/Channel"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as LogLevel from "effect/LogLevel"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import type { PoolError, WorkerCrashed } from "../../PoolError.ts"
import { SerializationError } from "../../PoolError.ts"
import type { SubmitOptions } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"
import { millis } from "../options.ts"
import { type Backend, type ChunkResult, type ChunkTimer, toExits } from "../service/backend.ts"
import { withRetry } from "../service/retry.ts"
import type { PoolEvents } from "../telemetry/events.ts"
import { Binary } from "../wire/binary.ts"
import { codecFor, type Convert, Invalid } from "../wire/codec.ts"
import { maxParts, Message, type ToWorkerMessage, type Trace } from "../wire/protocol.ts"
import type { Dispatcher } from "./dispatcher.ts"
import { type Decode, Entry } from "./entry.ts"
import { ChunkReplies, Crashed, replyDecoder, streamEndDecoder } from "./replies.ts"
import { StreamReceiver, windowOf } from "./stream.ts"

/** Encodes a message in the task's wire format: JSON text, or V8's serialization for binary tasks. */
const wire = (task: Task.Task.Any, message: ToWorkerMessage): string | Binary =>
  task.serialization === "binary" ? Binary.encode(message) : JSON.stringify(message)

/**
 * Builds a Run, RunBatch or RunStream message once the run has its id: the
 * payload is encoded when the effect runs, so each run sends the payload as
 * it is then, or fails with the SerializationError that says why it cannot
 * be sent.
 */
const runMessage = (
  task: Task.Task.Any,
  encode: Convert,
  payload: unknown,
  build: (id: number, encoded: any, trace: Trace) => ToWorkerMessage
) =>
(id: number, trace: Trace): string | Binary | SerializationError => {
  const encoded = encode(payload)
  return encoded instanceof Invalid
    ? new SerializationError({ task: task._tag, direction: "payload", issue: encoded.issue })
    : wire(task, build(id, encoded, trace))
}

/** The caller's span as `[traceId, spanId, sampled]`, or `0`: worker spans can join the caller's trace. */
const currentTrace = (): Trace => {
  const fiber = Fiber.getCurrent()
  if (fiber === undefined) return 0
  const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
  return span === undefined ? 0 : [span.traceId, span.spanId, span.sampled]
}

const tooLarge = (task: string, size: number, maxFrameSize: number) =>
  new SerializationError({
    task,
    direction: "payload",
    issue: `the encoded payload is ${size} bytes, more than maxFrameSize (${maxFrameSize} bytes); ` +
      `send large data by reference (a file path) or raise maxFrameSize`
  })

/** What the client gives the local backend: a call, a stream and a chunk, each through the dispatcher. @internal */
export type Client = Pick<Backend, "call" | "open" | "chunk">

/**
 * The client of one pool: every call goes through its dispatcher.
 *
 * @internal
 */
export const makeClient = (
  dispatcher: Dispatcher,
  maxFrameSize: number,
  streamWindow: number,
  events: PoolEvents = {},
  logLevel: LogLevel.LogLevel = "Info"
): Client => {
  /** Keeps the caller's context on the entry, for the worker's log lines, and its minimum log level if not the pool's. */
  const fromCaller = (entry: Entry): void => {
    const fiber = Fiber.getCurrent()
    if (fiber === undefined) return
    entry.caller = fiber.context
    const level = fiber.cache.minimumLogLevel
    if (level !== logLevel) entry.logLevel = level
  }

  /** The message of a run, encoded, or why it cannot be sent. */
  const prepare = (
    tag: string,
    id: number,
    message: (id: number, trace: Trace) => string | Binary | SerializationError
  ): string | Binary | SerializationError => {
    let encoded: string | Binary | SerializationError
    try {
      encoded = message(id, currentTrace())
    } catch (cause) {
      return new SerializationError({ task: tag, direction: "payload", issue: String(cause) })
    }
    if (encoded instanceof SerializationError) return encoded
    // A JSON message travels alone in a frame as `[message]`: two bytes more.
    const size = encoded instanceof Binary
      ? encoded.length
      : encoded.length > maxFrameSize / 3
      ? Buffer.byteLength(encoded) + 2
      : 0
    return size > maxFrameSize ? tooLarge(tag, size, maxFrameSize) : encoded
  }

  /** Cancels an entry, and completes once the worker has stopped it (or it ended anyway). */
  const stop = (entry: Entry): Effect.Effect<void> =>
    Effect.callback<void>((resume) => {
      dispatcher.cancel(entry)
      dispatcher.whenDone(entry, () => resume(Effect.void))
    })

  /**
   * Sends one message built by `message(id, trace)` and resumes with its reply,
   * decoded by `decode`. Interrupting the caller cancels the entry and waits
   * until the worker has stopped it.
   */
  const run = <A, E>(
    tag: string,
    message: (id: number, trace: Trace) => string | Binary | SerializationError,
    timeout: number,
    decode: Decode,
    batchSize = 0,
    setup?: (entry: Entry) => void
  ): Effect.Effect<A, E> =>
    Effect.callback<A, E>((resume) => {
      const id = dispatcher.id()
      const encoded = prepare(tag, id, message)
      if (encoded instanceof SerializationError) {
        events.unsent?.(tag, Math.max(1, batchSize), Fiber.getCurrent()?.context)
        return resume(Effect.fail(encoded as E))
      }
      const entry = new Entry(id, tag, encoded, timeout, decode, resume, batchSize)
      fromCaller(entry)
      setup?.(entry)
      dispatcher.submit(entry)
      return stop(entry)
    })

  const submitOnce = <T extends Task.Task.Any>(
    task: T,
    payload: Task.Task.Payload<T>,
    options?: SubmitOptions
  ): Effect.Effect<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError> => {
    const tag = task._tag
    const codec = codecFor(task)
    // 0 is no timeout; so is an infinite one.
    const timeout = options?.timeout === undefined ? 0 : millis(options.timeout, 0)
    return run(
      tag,
      runMessage(task, codec.encodePayload, payload, (id, encoded, trace) => Message.run(id, tag, encoded, trace)),
      timeout,
      replyDecoder(task)
    )
  }

  const submitChunkOnce = <T extends Task.Task.Any>(
    task: T,
    payloads: ReadonlyArray<Task.Task.Payload<T>>,
    timer: ChunkTimer
  ): Effect.Effect<ChunkResult, PoolError> => {
    if (payloads.length === 1) {
      return Effect.suspend(() => {
        const started = performance.now()
        // The item's Exit is the chunk's answer, so the item is retried here, as one of a crashed chunk is.
        return Effect.map(Effect.exit(retried(task, submitOnce(task, payloads[0]))), (exit) => {
          timer.record(1, performance.now() - started)
          return [exit]
        })
      })
    }
    const tag = task._tag
    const codec = codecFor(task)
    return Effect.suspend(() => {
      // At most `maxParts` parts a chunk: while the workers' own measure is unknown (cold, or items of unknown
      // length), a guess of one item a part would cost a write per item.
      const partItems = Math.max(timer.firstPartItems(), Math.ceil(payloads.length / maxParts))
      const replies = new ChunkReplies(task, payloads.length, partItems, timer)
      // One codec call for the chunk; the item that does not fit is named in the issue's path.
      const attempt = run<ChunkResult | Crashed, PoolError>(
        tag,
        runMessage(
          task,
          codec.encodePayloads,
          payloads,
          (id, encoded, trace) => Message.runBatch(id, tag, encoded, trace, partItems)
        ),
        0,
        replies.decode,
        payloads.length,
        replies.attach
      )
      return Effect.flatMap(
        attempt,
        (result) => result instanceof Crashed ? recover(task, payloads, timer, result) : Effect.succeed(result)
      )
    })
  }

  /**
   * A chunk whose worker died under it. Items whose results came back keep
   * them. The items of the part the worker was in (one, for items that take
   * half a millisecond or more) may have run: they fail with `WorkerCrashed`,
   * or, for an idempotent task, run again on its retry schedule. The items
   * after them never started: they run again, in a chunk of their own.
   */
  const recover = <T extends Task.Task.Any>(
    task: T,
    payloads: ReadonlyArray<Task.Task.Payload<T>>,
    timer: ChunkTimer,
    crashed: Crashed
  ): Effect.Effect<ChunkResult> => {
    const unknownEnd = Math.min(payloads.length, crashed.received + crashed.window)
    const unknown = payloads.slice(crashed.received, unknownEnd)
    const rest = payloads.slice(unknownEnd)
    const failed: Effect.Effect<Array<Exit.Exit<unknown, unknown>>> = task.retry === undefined
      ? Effect.succeed(unknown.map(() => Exit.fail(crashed.error)))
      : Effect.forEach(
        unknown,
        (payload) => Effect.exit(withRetry(task, afterCrash(crashed.error, submitOnce(task, payload, undefined))))
      )
    const again: Effect.Effect<Array<Exit.Exit<unknown, unknown>>> = rest.length === 0
      ? Effect.succeed([])
      : Effect.match(retried(task, submitChunkOnce(task, rest, timer)), {
        onFailure: (error) => rest.map(() => Exit.fail(error)),
        onSuccess: toExits
      })
    return Effect.map(
      Effect.all([failed, again]),
      ([failed, again]) => [...toExits(crashed.results), ...failed, ...again]
    )
  }

  /**
   * One attempt at a streaming task. The entry is submitted on the first
   * pull; its items are received, pulled and acknowledged as stream.ts says.
   * When the stream's scope closes before the end (the consumer stopped
   * early, failed or was interrupted), the worker's stream is interrupted and
   * its finalizers run before the scope finishes closing.
   */
  const streamOnce = <T extends Task.Task.Any>(
    task: T,
    payload: Task.Task.Payload<T>,
    options: SubmitOptions | undefined
  ): Stream.Stream<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError> =>
    Stream.fromChannel(Channel.fromTransform((_, scope) =>
      Effect.suspend(() => {
        const tag = task._tag
        const codec = codecFor(task)
        const window = windowOf(options?.window, streamWindow)
        const timeout = options?.timeout === undefined ? 0 : millis(options.timeout, 0)
        const id = dispatcher.id()
        const encoded = prepare(
          tag,
          id,
          runMessage(
            task,
            codec.encodePayload,
            payload,
            (id, encoded, trace) => Message.runStream(id, tag, encoded, trace, window)
          )
        )
        if (encoded instanceof SerializationError) {
          events.unsent?.(tag, 1, Fiber.getCurrent()?.context)
          return Effect.fail(encoded)
        }
        const receiver = new StreamReceiver<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError>(
          dispatcher,
          codec,
          tag
        )
        const entry = new Entry(id, tag, encoded, timeout, streamEndDecoder(task), receiver.end, 0)
        fromCaller(entry)
        receiver.attach(entry)
        dispatcher.submit(entry)
        return Effect.as(Scope.addFinalizer(scope, stop(entry)), receiver.pull)
      })
    ))

  // One attempt each: the service retries idempotent tasks (service/retry.ts).
  return {
    call: (task, payload, options) => submitOnce(task, payload, options),
    open: (task, payload, options) => streamOnce(task, payload, options),
    chunk: (task, payloads, timer) => submitChunkOnce(task, payloads, timer)
  }
}

/** `effect`, retried on the task's schedule when it has one (see service/retry.ts). */
const retried = <A, E>(task: Task.Task.Any, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  task.retry === undefined ? effect : withRetry(task, effect)

/**
 * `effect`, after a first attempt that already crashed with `crash`: retried
 * on a task's schedule, the attempt that crashed takes the schedule's first
 * step, so an item of a crashed chunk runs no more often than a call.
 */
const afterCrash = <A, E>(crash: WorkerCrashed, effect: Effect.Effect<A, E>): Effect.Effect<A, E> => {
  let replayed = false
  return Effect.suspend(() => {
    if (replayed) return effect
    replayed = true
    return Effect.fail(crash as E)
  })
}
