/**
 * The caller's side of a task's trip through the local pool: build the
 * message around the payload the service encoded, hand it to the dispatcher
 * as an `Entry`, and resume the caller with the worker's outcome, still
 * encoded (replies.ts). A stream's items are received in stream.ts; the
 * service decodes, and retries idempotent tasks (service/retry.ts).
 *
 * @internal
 */
import * as Channel from "effect/Channel"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as LogLevel from "effect/LogLevel"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import { LimitExceeded, type PoolError, WorkerCrashed } from "../../PoolError.ts"
import { SerializationError } from "../../PoolError.ts"
import type * as Task from "../../Task.ts"
import type { Backend, Call, ChunkTimer, Conversion, Outcome, RawChunk } from "../service/backend.ts"
import { passThrough } from "../service/codec.ts"
import { withRetry } from "../service/retry.ts"
import type { PoolEvents } from "../telemetry/events.ts"
import { Binary } from "../wire/binary.ts"
import { maxParts, Message, type ToWorkerMessage, type Trace } from "../wire/protocol.ts"
import type { Dispatcher } from "./dispatcher.ts"
import { type Decode, Entry } from "./entry.ts"
import { ChunkReplies, Crashed, replyDecoder, streamEndOf, toOutcomes } from "./replies.ts"
import { StreamReceiver, windowOf } from "./stream.ts"

/**
 * Encodes a message in the task's wire format: JSON text, or V8's serialization for binary tasks. A task with
 * `transfer` moves the byte arrays of its payloads into the message (see `Binary.encode`).
 */
const wire = (task: Task.Task.Any, message: ToWorkerMessage): string | Binary =>
  task.serialization === "binary" ? Binary.encode(message, task.transfer) : JSON.stringify(message)

/** Why the items of a chunk of a task with `transfer` are not sent again: their bytes were moved into it. */
const movedItems = (lost: WorkerCrashed | LimitExceeded): WorkerCrashed => {
  const why = lost instanceof LimitExceeded ? lost.message : lost.reason
  return new WorkerCrashed({
    pid: lost.pid,
    exitCode: lost instanceof WorkerCrashed ? lost.exitCode : null,
    signal: lost instanceof WorkerCrashed ? lost.signal : null,
    task: lost.task,
    ...(lost instanceof WorkerCrashed && lost.runner !== undefined ? { runner: lost.runner } : {}),
    reason: `${why === undefined ? "" : `${why}; `}it was not started, and was not sent again: its payload's byte ` +
      `arrays were moved into the chunk that was lost (the task transfers them)`
  })
}

/** Builds a Run, RunBatch or RunStream message in the task's wire format, once the run has its id. */
const runMessage =
  (task: Task.Task.Any, build: (id: number, trace: Trace) => ToWorkerMessage) =>
  (id: number, trace: Trace): string | Binary => wire(task, build(id, trace))

const noCall: Call = { timeout: 0, window: undefined, key: undefined }

/** What a chunk takes of its map's call. */
type ChunkCall = Pick<Call, "admit">

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
      // An encoded payload the wire cannot carry: a binary task's value V8 cannot serialize.
      return new SerializationError({ task: tag, direction: "payload", issue: String(cause), side: "caller" })
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
    call: Pick<Call, "timeout" | "admit">,
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
      const entry = new Entry(id, tag, encoded, call.timeout, decode, resume, batchSize)
      entry.admit = call.admit
      fromCaller(entry)
      setup?.(entry)
      dispatcher.submit(entry)
      return stop(entry)
    })

  /** One unary task: its payload encoded as the run starts, its outcome decoded where the reply arrives. */
  const submitOnce = (task: Task.Task.Any, payload: unknown, call: Call, convert: Conversion) => {
    const tag = task._tag
    return run<unknown, unknown>(
      tag,
      (id, trace) => {
        const encoded = convert.encode(payload)
        return encoded instanceof SerializationError ? encoded : wire(task, Message.run(id, tag, encoded, trace))
      },
      call,
      replyDecoder(convert.decode)
    )
  }

  /** One item of a chunk, alone: its payload is encoded already, and its outcome stays encoded. */
  const submitItem = (task: Task.Task.Any, payload: unknown, chunk: ChunkCall) =>
    submitOnce(task, payload, { ...noCall, admit: chunk.admit }, passThrough) as Effect.Effect<Outcome, PoolError>

  const submitChunkOnce = (
    task: Task.Task.Any,
    payloads: ReadonlyArray<unknown>,
    timer: ChunkTimer,
    call: ChunkCall
  ): Effect.Effect<RawChunk, PoolError> => {
    if (payloads.length === 1) {
      return Effect.suspend(() => {
        const started = performance.now()
        // The item's outcome is the chunk's answer, so the item is retried here, as one of a crashed chunk is.
        return Effect.match(retried(task, submitItem(task, payloads[0], call)), {
          onFailure: (error): RawChunk => {
            timer.record(1, performance.now() - started)
            return [error]
          },
          onSuccess: (outcome): RawChunk => {
            timer.record(1, performance.now() - started)
            return [outcome]
          }
        })
      })
    }
    const tag = task._tag
    return Effect.suspend(() => {
      // At most `maxParts` parts a chunk: while the workers' own measure is unknown (cold, or items of unknown
      // length), a guess of one item a part would cost a write per item.
      const partItems = Math.max(timer.firstPartItems(), Math.ceil(payloads.length / maxParts))
      const replies = new ChunkReplies(payloads.length, partItems, timer)
      const attempt = run<RawChunk | Crashed, PoolError>(
        tag,
        runMessage(task, (id, trace) => Message.runBatch(id, tag, payloads, trace, partItems)),
        { timeout: 0, admit: call.admit },
        replies.decode,
        payloads.length,
        replies.attach
      )
      return Effect.flatMap(
        attempt,
        (result) => result instanceof Crashed ? recover(task, payloads, timer, call, result) : Effect.succeed(result)
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
  const recover = (
    task: Task.Task.Any,
    payloads: ReadonlyArray<unknown>,
    timer: ChunkTimer,
    call: ChunkCall,
    crashed: Crashed
  ): Effect.Effect<RawChunk> => {
    const unknownEnd = Math.min(payloads.length, crashed.received + crashed.window)
    const unknown = payloads.slice(crashed.received, unknownEnd)
    const rest = payloads.slice(unknownEnd)
    const error = crashed.error
    // Past a limit, the items that may have run fail with it, and are not run again: they would pass it again.
    const failed: Effect.Effect<Array<Outcome | PoolError>> = task.retry === undefined || error instanceof LimitExceeded
      ? Effect.succeed(unknown.map(() => error))
      : Effect.forEach(
        unknown,
        (payload) =>
          Effect.match(withRetry(task, afterCrash(error, submitItem(task, payload, call))), {
            onFailure: (error): Outcome | PoolError => error,
            onSuccess: (outcome): Outcome | PoolError => outcome
          })
      )
    const again: Effect.Effect<Array<Outcome | PoolError>> = rest.length === 0
      ? Effect.succeed([])
      : task.transfer
      ? Effect.succeed(rest.map(() => movedItems(error)))
      : Effect.match(retried(task, submitChunkOnce(task, rest, timer, call)), {
        onFailure: (error) => rest.map(() => error),
        onSuccess: toOutcomes
      })
    return Effect.map(
      Effect.all([failed, again]),
      ([failed, again]) => [...toOutcomes(crashed.results), ...failed, ...again]
    )
  }

  /**
   * One attempt at a streaming task. The entry is submitted on the first
   * pull; its items are received, pulled and acknowledged as stream.ts says.
   * When the stream's scope closes before the end (the consumer stopped
   * early, failed or was interrupted), the worker's stream is interrupted and
   * its finalizers run before the scope finishes closing.
   */
  const streamOnce = (task: Task.Task.Any, payload: unknown, call: Call): Stream.Stream<unknown, Outcome | PoolError> =>
    Stream.fromChannel(Channel.fromTransform((_, scope) =>
      Effect.suspend(() => {
        const tag = task._tag
        const window = windowOf(call.window, streamWindow)
        const id = dispatcher.id()
        const encoded = prepare(
          tag,
          id,
          runMessage(task, (id, trace) => Message.runStream(id, tag, payload, trace, window))
        )
        if (encoded instanceof SerializationError) {
          events.unsent?.(tag, 1, Fiber.getCurrent()?.context)
          return Effect.fail(encoded)
        }
        const receiver = new StreamReceiver<unknown, Outcome | PoolError>(dispatcher)
        const entry = new Entry(id, tag, encoded, call.timeout, streamEndOf, receiver.end, 0)
        entry.admit = call.admit
        fromCaller(entry)
        receiver.attach(entry)
        dispatcher.submit(entry)
        return Effect.as(Scope.addFinalizer(scope, stop(entry)), receiver.pull)
      })
    ))

  // One attempt each: the service retries idempotent tasks (service/retry.ts).
  return {
    call: submitOnce,
    open: streamOnce,
    chunk: submitChunkOnce
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
