/**
 * The caller's side of a task's trip: encode the payload, build the message,
 * hand it to the dispatcher as an `Entry`, and decode the reply into the
 * caller's `Exit`. Retries of idempotent tasks wrap this.
 *
 * @internal
 */
import type * as Arr from "effect/Array"
import * as Cause from "effect/Cause"
import * as Channel from "effect/Channel"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as LogLevel from "effect/LogLevel"
import type * as Pull from "effect/Pull"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import type { PoolError } from "../../PoolError.ts"
import { SerializationError, TaskNotServed, WorkerCrashed } from "../../PoolError.ts"
import type { SubmitOptions } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"
import { millis } from "../options.ts"
import { type Backend, type ChunkResult, type ChunkTimer, toExits, Values } from "../service/backend.ts"
import type { PoolEvents } from "../telemetry/events.ts"
import { Binary } from "../wire/binary.ts"
import { codecFor, type Convert, decodeDefect, Invalid, type TaskCodec } from "../wire/codec.ts"
import { ExitKind, FromWorker, maxParts, Message, type ToWorkerMessage, type Trace } from "../wire/protocol.ts"
import type { Dispatcher } from "./dispatcher.ts"
import { type Decode, Entry, isPoolErrorReply } from "./entry.ts"

/** One task's or item's outcome, as the worker encoded it, decoded into the caller's `Exit`. */
const decodeExit = (codec: TaskCodec, tag: string, kind: number, value: unknown): Exit.Exit<any, any> => {
  switch (kind) {
    case ExitKind.Success: {
      const decoded = codec.decodeSuccess(value)
      return decoded instanceof Invalid
        ? Exit.fail(new SerializationError({ task: tag, direction: "result", issue: decoded.issue, side: "caller" }))
        : Exit.succeed(decoded)
    }
    case ExitKind.Failure: {
      const decoded = codec.decodeFailure(value)
      return decoded instanceof Invalid
        ? Exit.fail(new SerializationError({ task: tag, direction: "result", issue: decoded.issue, side: "caller" }))
        : Exit.fail(decoded)
    }
    case ExitKind.Defect:
      return Exit.die(decodeDefect(value))
    case ExitKind.Interrupted:
      return Exit.interrupt()
    case ExitKind.PayloadInvalid:
      return Exit.fail(
        new SerializationError({ task: tag, direction: "payload", issue: String(value), side: "worker" })
      )
    case ExitKind.ResultInvalid:
      return Exit.fail(new SerializationError({ task: tag, direction: "result", issue: String(value), side: "worker" }))
    case ExitKind.NotServed:
      return Exit.fail(new TaskNotServed({ task: tag }))
    default:
      return Exit.die(new Error(`effect-process-pool: unknown reply kind ${kind} for task "${tag}"`))
  }
}

/** The outcomes of a chunk's parts, in order, as one; copied once, into an array of the right length. */
const joinResults = (parts: ReadonlyArray<ChunkResult>): ChunkResult => {
  if (parts.length === 1) return parts[0]
  let total = 0
  let values = true
  for (const part of parts) {
    total += part instanceof Values ? part.values.length : part.length
    if (!(part instanceof Values)) values = false
  }
  const joined = new Array(total)
  let at = 0
  for (const part of parts) {
    if (part instanceof Values) {
      const items = part.values
      for (let i = 0; i < items.length; i++) joined[at++] = values ? items[i] : Exit.succeed(items[i])
    } else {
      for (let i = 0; i < part.length; i++) joined[at++] = part[i]
    }
  }
  return values ? new Values(joined) : joined
}

/** A chunk's worker died: the results of its first `received` items came back before. */
class Crashed {
  readonly results: ChunkResult
  readonly received: number
  /** How many items after those the worker may have run. */
  readonly window: number
  readonly error: WorkerCrashed
  constructor(results: ChunkResult, received: number, window: number, error: WorkerCrashed) {
    this.results = results
    this.received = received
    this.window = window
    this.error = error
  }
}

/** Decodes one item's outcome of a batch. */
type DecodeItem = (kind: number, value: unknown) => Exit.Exit<unknown, unknown>

const itemDecoders = new WeakMap<Task.Task.Any, DecodeItem>()
const replyDecoders = new WeakMap<Task.Task.Any, Decode>()

/** The decoder of one item's outcome of a task, built once. */
const itemDecoder = (task: Task.Task.Any): DecodeItem => {
  let decode = itemDecoders.get(task)
  if (decode === undefined) {
    const codec = codecFor(task)
    const tag = task._tag
    decode = (kind, value) => decodeExit(codec, tag, kind, value)
    itemDecoders.set(task, decode)
  }
  return decode
}

/** The reply decoder of a task, built once: every entry of the task shares it. */
const replyDecoder = (task: Task.Task.Any): Decode => {
  let decode = replyDecoders.get(task)
  if (decode === undefined) {
    const item = itemDecoder(task)
    decode = (reply) =>
      isPoolErrorReply(reply)
        ? Exit.fail(reply)
        : reply[0] === FromWorker.Exit
        ? item(reply[2], reply[3])
        : Exit.die(new Error(`effect-process-pool: a batch's answer to the single task "${task._tag}"`))
    replyDecoders.set(task, decode)
  }
  return decode
}

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

/** The reply decoder of a streaming task's end: its success carries no value, its items came before. */
const streamEndDecoders = new WeakMap<Task.Task.Any, Decode>()
const streamEndDecoder = (task: Task.Task.Any): Decode => {
  let decode = streamEndDecoders.get(task)
  if (decode === undefined) {
    const decodeReply = replyDecoder(task)
    decode = (reply) =>
      !isPoolErrorReply(reply) && reply[0] === FromWorker.Exit && reply[2] === ExitKind.Success
        ? Exit.void
        : decodeReply(reply)
    streamEndDecoders.set(task, decode)
  }
  return decode
}

/** The caller's span as `[traceId, spanId, sampled]`, or `0`: worker spans can join the caller's trace. */
const currentTrace = (): Trace => {
  const fiber = Fiber.getCurrent()
  if (fiber === undefined) return 0
  const span = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
  return span === undefined ? 0 : [span.traceId, span.spanId, span.sampled]
}

/** The last crash of a task that crashed a worker on each of its `attempts` attempts, saying so. */
const crashedEveryAttempt = (last: WorkerCrashed, attempts: number): WorkerCrashed =>
  new WorkerCrashed({
    pid: last.pid,
    exitCode: last.exitCode,
    signal: last.signal,
    task: last.task,
    reason: `${last.reason ?? "crashed"}; every one of ${attempts} attempts crashed a worker`
  })

/**
 * Retries an idempotent task whose worker crashed, on the task's schedule. A
 * typed failure is never retried. When the retries are spent, the last
 * `WorkerCrashed` says how many attempts crashed.
 */
const withRetry = <A, E>(task: Task.Task.Any, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    let attempts = 0
    return effect.pipe(
      Effect.tapError((error) => Effect.sync(() => error instanceof WorkerCrashed && attempts++)),
      Effect.retry({ schedule: task.retry!, while: (error) => error instanceof WorkerCrashed }),
      Effect.mapError((error) =>
        error instanceof WorkerCrashed && attempts > 1 ? crashedEveryAttempt(error, attempts) as E : error
      )
    )
  })

const tooLarge = (task: string, size: number, maxFrameSize: number) =>
  new SerializationError({
    task,
    direction: "payload",
    issue: `the encoded payload is ${size} bytes, more than maxFrameSize (${maxFrameSize} bytes); ` +
      `send large data by reference (a file path) or raise maxFrameSize`
  })

/**
 * Retries a streaming task whose worker crashed before any item reached the
 * caller, on the task's schedule. Once an item has been delivered, a crash
 * ends the stream: running it again would deliver items twice.
 */
const withStreamRetry = <A, E>(
  task: Task.Task.Any,
  attempt: (delivered: () => void) => Stream.Stream<A, E>
): Stream.Stream<A, E> =>
  Stream.unwrap(Effect.map(Schedule.toStepWithSleep(task.retry!), (step) => {
    let delivered = false
    let attempts = 0
    const markDelivered = () => {
      delivered = true
    }
    const go = (): Stream.Stream<A, E> =>
      Stream.catchCause(attempt(markDelivered), (cause): Stream.Stream<A, E> => {
        const error = Cause.findErrorOption(cause)
        if (delivered || error._tag === "None" || !(error.value instanceof WorkerCrashed)) {
          return Stream.failCause(cause)
        }
        attempts++
        const crashed = error.value
        return Stream.unwrap(Effect.matchCause(step(crashed), {
          onFailure: () => Stream.fail((attempts > 1 ? crashedEveryAttempt(crashed, attempts) : crashed) as E),
          onSuccess: () => go()
        }))
      })
    return go()
  }))

/** A stream's window as a whole number of items: at least 1, and `Infinity` as the most the wire can say. */
const windowOf = (window: number | undefined, fallback: number): number => {
  const value = window ?? fallback
  if (value === Infinity) return 2 ** 31 - 1
  return Number.isFinite(value) ? Math.max(1, Math.floor(value)) : Math.max(1, Math.floor(fallback) || 128)
}

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
      return Effect.callback<void>((resumeCancel) => {
        dispatcher.cancel(entry)
        dispatcher.whenDone(entry, () => resumeCancel(Effect.void))
      })
    })

  const submitPayload = <T extends Task.Task.Any>(
    task: T,
    payload: Task.Task.Payload<T>,
    options: SubmitOptions | undefined
  ): Effect.Effect<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError> =>
    task.retry === undefined ? submitOnce(task, payload, options) : withRetry(task, submitOnce(task, payload, options))

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

  /** Runs one chunk; item outcomes are in the array, chunk-level pool errors fail the effect. */
  const submitChunk = <T extends Task.Task.Any>(
    task: T,
    payloads: ReadonlyArray<Task.Task.Payload<T>>,
    timer: ChunkTimer
  ): Effect.Effect<ChunkResult, PoolError> =>
    task.retry === undefined
      ? submitChunkOnce(task, payloads, timer)
      : withRetry(task, submitChunkOnce(task, payloads, timer))

  const submitChunkOnce = <T extends Task.Task.Any>(
    task: T,
    payloads: ReadonlyArray<Task.Task.Payload<T>>,
    timer: ChunkTimer
  ): Effect.Effect<ChunkResult, PoolError> => {
    if (payloads.length === 1) {
      return Effect.suspend(() => {
        const started = performance.now()
        return Effect.map(Effect.exit(submitOnce(task, payloads[0])), (exit) => {
          timer.record(1, performance.now() - started)
          return [exit]
        })
      })
    }
    const tag = task._tag
    const codec = codecFor(task)
    const decodeItem = itemDecoder(task)
    /** Encoded values, decoded in one codec call; should one not decode, each alone, so that only it fails. */
    const decodeValues = (value: unknown): ChunkResult => {
      const values = codec.decodeSuccesses(value)
      return values instanceof Invalid
        ? (value as Array<unknown>).map((v) => decodeItem(ExitKind.Success, v))
        : new Values(values as ReadonlyArray<unknown>)
    }
    const decodeExits = (items: ReadonlyArray<readonly [number, unknown?]>): ChunkResult =>
      items.map(([k, v]) => decodeItem(k, v))
    return Effect.suspend(() => {
      const started = performance.now()
      const parts: Array<ChunkResult> = []
      let entry: Entry | undefined
      // At most `maxParts` parts a chunk: while the workers' own measure is unknown (cold, or items of unknown
      // length), a guess of one item a part would cost a write per item.
      const every = Math.max(timer.every(), Math.ceil(payloads.length / maxParts))
      const ended = (last: ChunkResult): Exit.Exit<ChunkResult> => {
        timer.record(payloads.length, performance.now() - started)
        parts.push(last)
        return Exit.succeed(joinResults(parts))
      }
      // One codec call for the chunk; the item that does not fit is named in the issue's path.
      const attempt = run<ChunkResult | Crashed, PoolError>(
        tag,
        runMessage(
          task,
          codec.encodePayloads,
          payloads,
          (id, encoded, trace) => Message.runBatch(id, tag, encoded, trace, every)
        ),
        0,
        (reply) => {
          if (isPoolErrorReply(reply)) {
            // The worker died while it ran this chunk: what finished is kept, and what never started runs again.
            return reply instanceof WorkerCrashed && entry !== undefined
              ? Exit.succeed(new Crashed(joinResults(parts), entry.received, entry.window || every, reply))
              : Exit.fail(reply)
          }
          switch (reply[0]) {
            case FromWorker.BatchValues:
              return ended(decodeValues(reply[2]))
            case FromWorker.BatchExit:
              return ended(decodeExits(reply[2]))
            default:
              // The chunk as a whole: not served, interrupted.
              return decodeItem(reply[2], reply[3])
          }
        },
        payloads.length,
        (created) => {
          entry = created
          // Until a part says otherwise, the items a crash would leave in doubt: see `recover`.
          created.window = every
          created.onPart = (exits, items) => {
            timer.partSize(created.window)
            parts.push(exits ? decodeExits(items as Array<[number, unknown]>) : decodeValues(items))
          }
        }
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
      : Effect.forEach(unknown, (payload) => Effect.exit(submitPayload(task, payload, undefined)))
    const again: Effect.Effect<Array<Exit.Exit<unknown, unknown>>> = rest.length === 0
      ? Effect.succeed([])
      : Effect.match(submitChunk(task, rest, timer), {
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
   * pull. Items arrive pushed by the worker, at most `window` ahead of what
   * the consumer has taken: each pull takes every item that has arrived and
   * acknowledges them, which lets the worker produce as many more. When the
   * stream's scope closes before the end (the consumer stopped early, failed
   * or was interrupted), the worker's stream is interrupted and its
   * finalizers run before the scope finishes closing.
   */
  const streamOnce = <T extends Task.Task.Any>(
    task: T,
    payload: Task.Task.Payload<T>,
    options: SubmitOptions | undefined,
    delivered: () => void
  ): Stream.Stream<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError> =>
    Stream.fromChannel(Channel.fromTransform((_, scope) =>
      Effect.suspend(() => {
        const tag = task._tag
        const codec = codecFor(task)
        const window = windowOf(options?.window, streamWindow)
        const timeout = options?.timeout === undefined ? 0 : millis(options.timeout, 0)
        let buffer: Array<unknown> = []
        // Items handed to the consumer and not yet acknowledged: the consumer is done with them at its next pull.
        let taken = 0
        let end: Exit.Exit<unknown, unknown> | undefined
        let wake: (() => void) | undefined
        const notify = () => {
          const waiting = wake
          wake = undefined
          waiting?.()
        }
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
        const entry = new Entry(
          id,
          tag,
          encoded,
          timeout,
          streamEndDecoder(task),
          (exit: Exit.Exit<unknown, unknown>) => {
            if (end === undefined) end = exit
            notify()
          },
          0
        )
        fromCaller(entry)
        entry.onItems = (values) => {
          if (end !== undefined) return
          const decoded = codec.decodeSuccesses(values)
          if (decoded instanceof Invalid) {
            // The stream cannot go on: the items that did decode are still delivered, one by one.
            for (const value of values) {
              const item = codec.decodeSuccess(value)
              if (item instanceof Invalid) {
                end = Exit.fail(
                  new SerializationError({ task: tag, direction: "result", issue: item.issue, side: "caller" })
                )
                dispatcher.cancel(entry)
                break
              }
              buffer.push(item)
            }
          } else {
            for (const item of decoded as Array<unknown>) buffer.push(item)
          }
          notify()
        }
        dispatcher.submit(entry)
        const pull: Pull.Pull<Arr.NonEmptyReadonlyArray<Task.Task.Success<T>>, Task.Task.Failure<T> | PoolError> =
          Effect.suspend(() => {
            // Pulling again means the consumer is done with what it took: the worker may produce as many more.
            if (taken > 0 && end === undefined) dispatcher.ack(entry, taken)
            taken = 0
            if (buffer.length > 0) {
              const items = buffer
              buffer = []
              taken = items.length
              delivered()
              return Effect.succeed(items as unknown as Arr.NonEmptyReadonlyArray<Task.Task.Success<T>>)
            }
            if (end !== undefined) return Exit.isSuccess(end) ? Cause.done() : (end as Exit.Exit<never, any>)
            return Effect.callback<void>((resume) => {
              wake = () => resume(Effect.void)
              return Effect.sync(() => {
                wake = undefined
              })
            }).pipe(Effect.flatMap(() => pull))
          })
        return Effect.as(
          Scope.addFinalizer(
            scope,
            Effect.callback<void>((resume) => {
              dispatcher.cancel(entry)
              dispatcher.whenDone(entry, () => resume(Effect.void))
            })
          ),
          pull
        )
      })
    ))

  const submitStream = <T extends Task.Task.Any>(
    task: T,
    payload: Task.Task.Payload<T>,
    options: SubmitOptions | undefined
  ): Stream.Stream<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError> =>
    task.retry === undefined
      ? streamOnce(task, payload, options, () => {})
      : withStreamRetry(task, (delivered) => streamOnce(task, payload, options, delivered))

  return {
    call: submitPayload,
    open: submitStream,
    chunk: (task, payloads, timer) => submitChunk(task, payloads, timer)
  }
}
