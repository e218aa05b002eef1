/**
 * The worker's serve loop, as a value: it takes the parent's messages, already
 * decoded, runs the tasks they ask for, and answers through `send`.
 *
 * It knows nothing of pipes, frames or processes: worker/main.ts wires fd 3 to
 * it, and a test (or an in-memory connection) can wire a client to it
 * directly, as Effect's `RpcTest` does.
 *
 * What it owns: the jobs received and not yet answered, the queue of those
 * waiting for a free slot, single runs, interruption, the memory ceiling, and
 * the moment to stop after Shutdown. Batches run in batch.ts and streams in
 * stream.ts, on the output it gives them.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import type * as LogLevel from "effect/LogLevel"
import * as Tracer from "effect/Tracer"
import type * as Task from "../../Task.ts"
import { binaryMode } from "../wire/binary.ts"
import { codecFor } from "../wire/codec.ts"
import { ExitKind, Message, ToWorker, type ToWorkerMessage } from "../wire/protocol.ts"
import { type BatchJob, type BatchOutcome, runBatch, sendOutcome } from "./batch.ts"
import { encodeExit, type Output, payloadAwareExit, runHandler } from "./run.ts"
import { ack, runStream, sendEnd, type StreamJob } from "./stream.ts"

/** @internal */
export interface ServerOptions extends Output {
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

/**
 * A task received from the parent and not yet answered. A batch's part sizes
 * (`every`) are batch.ts's, a stream's credits stream.ts's.
 */
interface Entry extends BatchJob, StreamJob {
  readonly batch: boolean
  /** The caller's span, when it had one: the task's span joins its trace. */
  readonly parent: Tracer.ExternalSpan | undefined
  /** Its caller's minimum log level, when it is not the pool's. */
  readonly logLevel: LogLevel.LogLevel | undefined
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  interruptRequested: boolean
}

/** The caller's span from a Run message's `[traceId, spanId, sampled]`; anything else is no span. */
const parentSpan = (trace: unknown): Tracer.ExternalSpan | undefined =>
  Array.isArray(trace) && typeof trace[0] === "string" && typeof trace[1] === "string"
    ? Tracer.externalSpan({ traceId: trace[0], spanId: trace[1], sampled: trace[2] !== false })
    : undefined

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
  const { flush, handlers, maxMemory, runFork, send, workerConcurrency } = options

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
    const binary = handler !== undefined && binaryMode(handler.task)
    if (job.batch && Exit.isSuccess(exit)) {
      sendOutcome(options, job.id, exit.value as BatchOutcome, binary)
    } else if (Exit.isFailure(exit) && job.interruptRequested && Cause.hasInterruptsOnly(exit.cause)) {
      send(Message.exit(job.id, ExitKind.Interrupted), false)
    } else if (job.credits < 0 || !sendEnd(options, job.id, exit)) {
      // A stream that ended by itself has had its Exit sent; any other end is encoded as a task's.
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
      ? runBatch(job, handler, codec, job.payload as ReadonlyArray<unknown>, options)
      : job.credits >= 0
      ? runStream(job, handler, codec, options)
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
        return ack(job, message[2])
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
