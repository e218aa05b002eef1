/**
 * The worker's serve loop, as a value: it takes the parent's messages, already
 * decoded, runs the tasks they ask for, and answers through `send`.
 *
 * It knows nothing of pipes, frames or processes: worker/main.ts wires fd 3 to
 * it, and a test (or an in-memory connection) can wire a client to it
 * directly, as Effect's `RpcTest` does.
 *
 * What it owns: the jobs received and not yet answered, the queue of those
 * waiting for a free slot, batch parts, stream credits, interruption, the
 * memory ceiling, and the moment to stop after Shutdown.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as LogLevel from "effect/LogLevel"
import type * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import type * as Task from "../../Task.ts"
import { codecFor, encodeDefect, Invalid, type TaskCodec } from "../wire/codec.ts"
import { ExitKind, type FromWorkerMessage, Message, ToWorker, type ToWorkerMessage } from "../wire/protocol.ts"

/** @internal */
export interface ServerOptions {
  readonly handlers: ReadonlyMap<string, Task.Handler.Any>
  /**
   * Forks the effect of task `task` with the worker module's services
   * (Effect.runForkWith(services)), and `logLevel` as its minimum log level
   * when the parent asked for one.
   */
  readonly runFork: <A, E>(
    effect: Effect.Effect<A, E>,
    task: number,
    logLevel: LogLevel.LogLevel | undefined
  ) => Fiber.Fiber<A, E>
  /** Tasks run at once (workerConcurrency). */
  readonly workerConcurrency: number
  /** Resident set size in bytes past which the server asks to be recycled (Message.recycle); 0 for no ceiling. */
  readonly maxMemory: number
  /** Queues one message for the parent; `binary` for the results of tasks declared with serialization "binary". */
  readonly send: (message: FromWorkerMessage, binary: boolean) => void
  /** Writes what is queued now. */
  readonly flush: () => void
  /** Waits until everything written has left the process (used between batch parts). */
  readonly drained: Effect.Effect<void>
  /** The parent has read the result region at `offset` of the results shared file: it may be reused. */
  readonly release: (offset: number) => void
  /** Called once, after Shutdown, when no task runs any more: the entry then closes the services and exits. */
  readonly onShutdown: () => void
  /** This process's resident set size, for Pong and the memory ceiling. */
  readonly rss: () => number
}

/** @internal */
export interface Server {
  /** Handles one message from the parent, already decoded. */
  readonly receive: (message: ToWorkerMessage) => void
}

/** A task received from the parent and not yet answered. */
interface Entry {
  readonly id: number
  readonly tag: string
  readonly payload: unknown
  readonly batch: boolean
  /**
   * For a batch: after this many items, their results are written before the
   * next item starts (0 for never). Each part then says how many items the
   * next one holds at most, sized to about `partBudget` ms of work.
   */
  every: number
  /** For a streaming task: how many more items it may send before the parent acknowledges some; -1 otherwise. */
  credits: number
  /** Resumes a stream waiting for credits. */
  wake: (() => void) | undefined
  /** The caller's span, when it had one: the task's span joins its trace. */
  readonly parent: Tracer.ExternalSpan | undefined
  /** Its caller's minimum log level, when it is not the pool's. */
  readonly logLevel: LogLevel.LogLevel | undefined
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  interruptRequested: boolean
}

/** An outcome as it travels: `[kind, value]`. */
type EncodedExit = [kind: ExitKind, value?: unknown]

/** The outcome of a batch: every item's `[kind, value]`, or, when all succeeded, their encoded values alone. */
type BatchOutcome = Array<EncodedExit> | { readonly values: Array<unknown> }

/**
 * About how many milliseconds of work a batch part holds. A part costs a write
 * and a read; should the worker die, the items of its current part are the
 * ones whose fate is unknown.
 */
const partBudget = 0.5

/** The most parts a batch is written in, whatever its items take: a part costs a write on each side. */
const maxParts = 8

/** The caller's span from a Run message's `[traceId, spanId, sampled]`; anything else is no span. */
const parentSpan = (trace: unknown): Tracer.ExternalSpan | undefined =>
  Array.isArray(trace) && typeof trace[0] === "string" && typeof trace[1] === "string"
    ? Tracer.externalSpan({ traceId: trace[0], spanId: trace[1], sampled: trace[2] !== false })
    : undefined

const encodeExit = (
  codec: TaskCodec | undefined,
  exit: Exit.Exit<unknown, unknown>,
  interruptRequested: boolean
): EncodedExit => {
  if (Exit.isSuccess(exit)) {
    const value = codec!.encodeSuccess(exit.value)
    return value instanceof Invalid ? [ExitKind.ResultInvalid, value.issue] : [ExitKind.Success, value]
  }
  const cause = exit.cause
  for (const reason of cause.reasons) {
    if (reason._tag === "Fail") {
      const value = codec!.encodeFailure(reason.error)
      return value instanceof Invalid ? [ExitKind.ResultInvalid, value.issue] : [ExitKind.Failure, value]
    }
  }
  for (const reason of cause.reasons) {
    if (reason._tag === "Die") return [ExitKind.Defect, encodeDefect(reason.defect)]
  }
  if (interruptRequested) return [ExitKind.Interrupted]
  return [ExitKind.Defect, encodeDefect(new Error("The task interrupted itself inside the worker"))]
}

/** Like {@link encodeExit}, but a payload that did not decode is reported as such. */
const payloadAwareExit = (codec: TaskCodec, exit: Exit.Exit<unknown, unknown>): EncodedExit => {
  if (Exit.isFailure(exit)) {
    const invalid = Cause.findErrorOption(exit.cause)
    if (invalid._tag === "Some" && invalid.value instanceof Invalid) {
      return [ExitKind.PayloadInvalid, invalid.value.issue]
    }
  }
  return encodeExit(codec, exit, false)
}

/** Runs one decoded payload. */
const runDecoded = (handler: Task.Handler.Any, payload: unknown): Effect.Effect<unknown, unknown> => {
  try {
    return handler.run(payload) as Effect.Effect<unknown, unknown>
  } catch (defect) {
    return Effect.die(defect)
  }
}

/** Runs one payload: decode, handle. Never fails: the outcome is in the Exit. */
const runHandler = (handler: Task.Handler.Any, codec: TaskCodec, payload: unknown): Effect.Effect<unknown, unknown> => {
  const decoded = codec.decodePayload(payload)
  if (decoded instanceof Invalid) return Effect.fail(decoded)
  return runDecoded(handler, decoded)
}

/** An item of a streaming task's output did not fit its success Schema. */
class ItemInvalid {
  readonly issue: string
  constructor(issue: string) {
    this.issue = issue
  }
}

/** The issue of a stream item that did not encode, if that is how the stream ended. */
const itemInvalid = (exit: Exit.Exit<unknown, unknown>): string | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const error = Cause.findErrorOption(exit.cause)
  return error._tag === "Some" && error.value instanceof ItemInvalid ? error.value.issue : undefined
}

/** Waits until the parent has acknowledged enough items for the stream to send more. */
const credit = (job: Entry): Effect.Effect<void> =>
  job.credits > 0 ? Effect.void : Effect.callback<void>((resume) => {
    job.wake = () => resume(Effect.void)
    return Effect.sync(() => {
      job.wake = undefined
    })
  })

/** `effect/Stream`, loaded by the first streaming task: workers that serve none never pay for it. */
let streamModulePromise: Promise<typeof Stream> | undefined
const streamModule = Effect.promise(() => (streamModulePromise ??= import("effect/Stream")))

/**
 * Makes the serve loop of one worker. Each message from the parent goes to
 * `receive`; every answer leaves through `send`.
 *
 * Results already computed are written (`flush`) before the next task
 * starts, so that when the process dies the parent knows exactly which tasks
 * had started: those are the only ones it fails.
 *
 * @internal
 */
export const makeServer = (options: ServerOptions): Server => {
  const { drained, flush, handlers, maxMemory, runFork, send, workerConcurrency } = options

  const jobs = new Map<number, Entry>()
  const queue: Array<Entry> = []
  let queueHead = 0
  let running = 0
  let pumping = false
  let shuttingDown = false
  let shutDown = false
  let recycleRequested = false
  /** The minimum log level the parent asked for the task it sends next (a LogLevel message precedes its Run). */
  let nextLevel: readonly [id: number, level: LogLevel.LogLevel] | undefined

  /**
   * Runs the items of a batch one after another in one fiber. Payloads are
   * decoded, and successes encoded, a whole chunk per codec call; the item by
   * item path is taken only to report which items failed.
   */
  const runBatch = (
    job: Entry,
    handler: Task.Handler.Any,
    codec: TaskCodec,
    payloads: ReadonlyArray<unknown>
  ): Effect.Effect<BatchOutcome> =>
    Effect.suspend(() => {
      const decoded = codec.decodePayloads(payloads)
      const valid = !(decoded instanceof Invalid)
      const binary = handler.task.serialization === "binary"
      // The values while every item of the current part succeeds; every item's Exit from the first one that does not.
      let values: Array<unknown> = []
      let exits: Array<Exit.Exit<unknown, unknown>> | undefined
      let i = 0
      // Where the current part began: its items' results have not been written yet.
      let partFrom = 0
      let partStarted = performance.now()
      const record = (exit: Exit.Exit<unknown, unknown>): void => {
        if (exits === undefined) {
          if (Exit.isSuccess(exit)) return void values.push(exit.value)
          exits = values.map((value) => Exit.succeed(value))
        }
        exits.push(exit)
      }
      /** The outcome of the current part, encoded; the next part starts empty. */
      const takePart = (): BatchOutcome => {
        let outcome: BatchOutcome | undefined
        if (exits === undefined) {
          const encoded = codec.encodeSuccesses(values)
          if (!(encoded instanceof Invalid)) outcome = { values: encoded as Array<unknown> }
        }
        outcome ??= (exits ?? values.map((value) => Exit.succeed(value))).map((exit) => payloadAwareExit(codec, exit))
        values = []
        exits = undefined
        partFrom = i
        partStarted = performance.now()
        return outcome
      }
      const step: Effect.Effect<BatchOutcome> = Effect.suspend(() => {
        while (i < payloads.length) {
          if (job.every > 0 && i - partFrom >= job.every) {
            // The results so far reach the pipe before the next item starts: should this process die during
            // the next part, the parent knows which items finished, which may have run, and which never started.
            const perItem = (performance.now() - partStarted) / (i - partFrom)
            job.every = Math.max(
              1,
              Math.ceil(payloads.length / maxParts),
              Math.min(65_536, Math.floor(partBudget / Math.max(perItem, 1e-5)))
            )
            const part = takePart()
            send(
              Array.isArray(part)
                ? Message.batchPart(job.id, 1, part, job.every)
                : Message.batchPart(job.id, 0, part.values, job.every),
              binary
            )
            flush()
            return Effect.flatMap(drained, () => step)
          }
          const index = i++
          const run = valid
            ? runDecoded(handler, (decoded as Array<unknown>)[index])
            : runHandler(handler, codec, payloads[index])
          // A handler that answers with a ready value (`Effect.succeed`, `Effect.fail`) needs no fiber step.
          if (Exit.isExit(run)) {
            record(run)
            continue
          }
          return Effect.flatMap(Effect.exit(run), (exit) => {
            record(exit)
            return step
          })
        }
        return Effect.succeed(takePart())
      })
      return step
    })

  /**
   * Runs a streaming task: decodes the payload, runs the handler's stream, and
   * sends its items as they come, chunk by chunk, encoded with the success
   * Schema. The stream is paused, not buffered, while `window` items are
   * waiting for the consumer: it pulls no more until the parent acknowledges
   * some. Its end is the job's Exit.
   */
  const runStream = (job: Entry, handler: Task.Handler.Any, codec: TaskCodec): Effect.Effect<void, unknown> =>
    Effect.flatMap(streamModule, (Stream) => runStreamWith(Stream, job, handler, codec))

  const runStreamWith = (
    Stream: typeof import("effect/Stream"),
    job: Entry,
    handler: Task.Handler.Any,
    codec: TaskCodec
  ): Effect.Effect<void, unknown> => {
    const decoded = codec.decodePayload(job.payload)
    if (decoded instanceof Invalid) return Effect.fail(decoded)
    let stream: Stream.Stream<unknown, unknown>
    try {
      stream = handler.run(decoded) as Stream.Stream<unknown, unknown>
    } catch (defect) {
      return Effect.die(defect)
    }
    if (!Stream.isStream(stream)) {
      return Effect.die(new Error(`the handler of streaming task "${job.tag}" did not return a Stream`))
    }
    const binary = handler.task.serialization === "binary"
    /** Encodes a chunk; should one item not fit, the items before it, and why. */
    const encode = (items: ReadonlyArray<unknown>): [Array<unknown>, ItemInvalid | undefined] => {
      const encoded = codec.encodeSuccesses(items)
      if (!(encoded instanceof Invalid)) return [encoded as Array<unknown>, undefined]
      const good: Array<unknown> = []
      for (const item of items) {
        const value = codec.encodeSuccess(item)
        if (value instanceof Invalid) return [good, new ItemInvalid(value.issue)]
        good.push(value)
      }
      return [good, new ItemInvalid(encoded.issue)]
    }
    const sendAll = (items: ReadonlyArray<unknown>): Effect.Effect<void, ItemInvalid> => {
      const [values, invalid] = encode(items)
      let at = 0
      const loop: Effect.Effect<void, ItemInvalid> = Effect.suspend(() => {
        while (at < values.length && job.credits > 0) {
          const n = Math.min(job.credits, values.length - at)
          job.credits -= n
          send(Message.items(job.id, at === 0 && n === values.length ? values : values.slice(at, at + n)), binary)
          at += n
        }
        // Written now: the stream may go on computing without yielding to the event loop.
        flush()
        if (at < values.length) return Effect.flatMap(credit(job), () => loop)
        return invalid === undefined ? Effect.void : Effect.fail(invalid)
      })
      return loop
    }
    // After each chunk the event loop runs: an Interrupt or Ack from the parent is read even while the
    // stream is made of CPU-bound steps that never wait.
    return Stream.runForEachArray(
      stream,
      (items) => Effect.flatMap(credit(job), () => Effect.andThen(sendAll(items), Effect.yieldNow))
    )
  }

  /** Past the memory ceiling, asks the parent for a replacement; the parent stops sending work here. */
  const checkMemory = (): void => {
    if (options.rss() <= maxMemory) return
    recycleRequested = true
    send(Message.recycle, false)
  }

  /** After Shutdown, once no task runs: the entry closes the services and exits. */
  const shutdown = (): void => {
    if (shutDown) return
    shutDown = true
    options.onShutdown()
  }

  const finish = (job: Entry, handler: Task.Handler.Any | undefined, exit: Exit.Exit<unknown, unknown>): void => {
    running--
    jobs.delete(job.id)
    const binary = handler?.task.serialization === "binary"
    if (job.batch && Exit.isSuccess(exit)) {
      const outcome = exit.value as BatchOutcome
      if (Array.isArray(outcome)) send(Message.batchExit(job.id, outcome), binary)
      else send(Message.batchValues(job.id, outcome.values), binary)
    } else if (Exit.isFailure(exit) && job.interruptRequested && Cause.hasInterruptsOnly(exit.cause)) {
      send(Message.exit(job.id, ExitKind.Interrupted), false)
    } else if (job.credits >= 0 && Exit.isSuccess(exit)) {
      // A stream's end: its items went before.
      send(Message.exit(job.id, ExitKind.Success, null), false)
    } else if (job.credits >= 0 && itemInvalid(exit) !== undefined) {
      send(Message.exit(job.id, ExitKind.ResultInvalid, itemInvalid(exit)), false)
    } else {
      const codec = handler === undefined ? undefined : codecFor(handler.task)
      const [kind, value] = job.batch
        ? encodeExit(undefined, exit, job.interruptRequested)
        : payloadAwareExit(codec!, exit)
      send(Message.exit(job.id, kind, value), binary)
    }
    if (maxMemory > 0 && !recycleRequested) checkMemory()
    if (shuttingDown && running === 0) return shutdown()
    // With nothing waiting there is nothing to pack the result with: write it now,
    // before anything else the handler left behind can hold the event loop.
    if (queueHead >= queue.length) flush()
    else pump()
  }

  const start = (job: Entry): void => {
    const handler = handlers.get(job.tag)
    if (handler === undefined) {
      jobs.delete(job.id)
      send(Message.exit(job.id, ExitKind.NotServed), false)
      return
    }
    const codec = codecFor(handler.task)
    if ((job.credits >= 0) !== handler.task.stream) {
      jobs.delete(job.id)
      const issue = handler.task.stream
        ? `task "${job.tag}" streams in this worker, but the caller's contract does not: are both on the same version?`
        : `task "${job.tag}" streams for the caller, but not in this worker: are both on the same version?`
      send(Message.exit(job.id, ExitKind.PayloadInvalid, issue), false)
      return
    }
    const run = job.batch
      ? runBatch(job, handler, codec, job.payload as ReadonlyArray<unknown>)
      : job.credits >= 0
      ? runStream(job, handler, codec)
      : runHandler(handler, codec, job.payload)
    // Called from inside a span, the task runs in a span of its own, in the caller's trace.
    const effect = job.parent === undefined ? run : run.pipe(
      Effect.withSpan(`ProcessPool.task ${job.tag}`, { attributes: { "process.pid": process.pid } }),
      Effect.withParentSpan(job.parent)
    )
    running++
    // A ready value (`Effect.succeed`, `Effect.fail`, a bad payload) is its own outcome: no fiber.
    if (!job.batch && Exit.isExit(effect)) return finish(job, handler, effect)
    const fiber = runFork(effect, job.id, job.logLevel)
    const exit = fiber.pollUnsafe()
    if (exit !== undefined) return finish(job, handler, exit)
    job.fiber = fiber
    fiber.addObserver((exit) => finish(job, handler, exit))
  }

  /**
   * Starts queued jobs while there is room. Results already computed are
   * written before the next job starts.
   */
  const pump = (): void => {
    if (pumping) return
    pumping = true
    while (running < workerConcurrency && queueHead < queue.length) {
      const job = queue[queueHead]
      queue[queueHead++] = undefined as unknown as Entry
      if (queueHead === queue.length) {
        queue.length = 0
        queueHead = 0
      }
      if (job.interruptRequested) continue
      // What the jobs before it left queued goes first (nothing is written when nothing is queued).
      flush()
      start(job)
    }
    pumping = false
  }

  const enqueue = (
    id: number,
    tag: string,
    payload: unknown,
    trace: unknown,
    batch: boolean,
    every: number,
    credits: number
  ): void => {
    const job: Entry = {
      id,
      tag,
      payload,
      batch,
      every,
      credits,
      wake: undefined,
      parent: parentSpan(trace),
      logLevel: nextLevel !== undefined && nextLevel[0] === id ? nextLevel[1] : undefined,
      fiber: undefined,
      interruptRequested: false
    }
    nextLevel = undefined
    jobs.set(id, job)
    queue.push(job)
    pump()
  }

  const receive = (message: ToWorkerMessage): void => {
    switch (message[0]) {
      case ToWorker.Run:
        return enqueue(message[1], message[2], message[3], message[4], false, 0, -1)
      case ToWorker.RunBatch: {
        const every = message[5]
        return enqueue(
          message[1],
          message[2],
          message[3],
          message[4],
          true,
          typeof every === "number" ? Math.max(0, every) : 0,
          -1
        )
      }
      case ToWorker.RunStream:
        return enqueue(message[1], message[2], message[3], message[4], false, 0, Math.floor(message[5]))
      case ToWorker.Interrupt: {
        const job = jobs.get(message[1])
        if (job === undefined || job.interruptRequested) return
        job.interruptRequested = true
        if (job.fiber !== undefined) return job.fiber.interruptUnsafe()
        // Not started yet: it is skipped when its turn comes.
        jobs.delete(job.id)
        return send(Message.exit(job.id, ExitKind.Interrupted), false)
      }
      case ToWorker.Ack: {
        const job = jobs.get(message[1])
        if (job === undefined || job.credits < 0) return
        job.credits += message[2]
        const wake = job.wake
        job.wake = undefined
        return wake?.()
      }
      case ToWorker.LogLevel:
        nextLevel = [message[1], message[2]]
        return
      case ToWorker.Ping:
        return send(Message.pong(message[1], options.rss()), false)
      case ToWorker.Release:
        return options.release(message[1])
      case ToWorker.Shutdown:
        shuttingDown = true
        if (running === 0) shutdown()
        return
    }
  }

  return { receive }
}
