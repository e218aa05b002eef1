/**
 * The entry point of every worker process.
 *
 * `node workerMain.ts <module url> <options json>`: imports the user's module,
 * builds the services its handlers need, says Ready on fd 3, and then serves
 * tasks until the parent asks it to exit or its pipe to the parent closes.
 *
 * Imports are deep and few: every module loaded here is start-up time paid by
 * every worker.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import * as net from "node:net"
import type * as Task from "../Task.ts"
import { isHandlers } from "../Worker.ts"
import { Binary, decodeBinary } from "./binary.ts"
import { codecFor, encodeDefect, Invalid, type TaskCodec } from "./codec.ts"
import { workerKey, type WorkerOfModule } from "./entry.ts"
import { ExitKind, FromWorker, ToWorker } from "./protocol.ts"
import { SharedFile } from "./sharedFile.ts"
import { FrameReader, FrameWriter } from "./transport.ts"

/** @internal */
export interface WorkerOptions {
  readonly concurrency: number
  readonly maxFrameSize: number
  /** Resident set size in bytes past which the worker asks to be recycled; 0 for no ceiling. */
  readonly maxMemory: number
  /** Whether fds 4 and 5 are the shared files for large payloads and results (see sharedFile.ts). */
  readonly shared?: boolean
}

/** Exit codes that tell the parent why a worker could not start. */
const StartFailure = {
  ImportFailed: 70,
  NoHandlers: 71,
  LayerFailed: 72,
  /** The module builds a pool of itself when imported: see `refuse` below. */
  PoolOfItself: 73
} as const

interface Job {
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
  fiber: Fiber.Fiber<unknown, unknown> | undefined
  interruptRequested: boolean
}

/** The caller's span from a Run message's `[traceId, spanId, sampled]`; anything else is no span. */
const parentSpan = (trace: unknown): Tracer.ExternalSpan | undefined =>
  Array.isArray(trace) && typeof trace[0] === "string" && typeof trace[1] === "string"
    ? Tracer.externalSpan({ traceId: trace[0], spanId: trace[1], sampled: trace[2] !== false })
    : undefined

const moduleUrl = process.argv[2]
const options: WorkerOptions = JSON.parse(process.argv[3] ?? "{}")

// Ctrl-C reaches the whole process group; the parent decides when workers stop.
process.on("SIGINT", () => {})

const channel = new net.Socket({ fd: 3, readable: true, writable: true })
const writer = new FrameWriter(channel)
/** Where large results go (fd 5): written at once, even when a CPU-bound task starts right after. */
const sharedOut = options.shared === true ? new SharedFile(5) : undefined
// The pipe closes when the parent exits or is killed: never outlive it.
channel.on("end", () => process.exit(0))
channel.on("error", () => process.exit(0))
// Results already computed reach the parent even when a handler calls process.exit.
process.on("exit", () => writer.flush())

const fail = (code: number, message: string, cause?: unknown): never => {
  process.stderr.write(`effect-process-pool worker ${process.pid}: ${message}\n`)
  if (cause !== undefined) {
    process.stderr.write(`${Cause.isCause(cause) ? Cause.pretty(cause) : formatThrown(cause)}\n`)
  }
  // Before Ready, the parent reads why: the user's own error first (see `summary`).
  if (!ready) writer.send(JSON.stringify([FromWorker.StartFailed, summary(message, cause)]))
  return process.exit(code)
}

const formatThrown = (u: unknown): string => {
  try {
    return u instanceof Error ? (u.stack ?? `${u.name}: ${u.message}`) : String(u)
  } catch {
    return "a value that cannot be printed"
  }
}

/** Where this library's own files are (src/ or dist/), as a URL and as a path. */
const libraryUrl = new URL("..", import.meta.url)
const libraryDirs = [libraryUrl.href, libraryUrl.pathname]

/** A stack frame of Node's loader, of `effect`, or of this library: noise in front of the user's own. */
const isInternalFrame = (line: string): boolean =>
  /\bnode:|[\\/]node_modules[\\/]effect[\\/]/.test(line) || libraryDirs.some((dir) => line.includes(dir))

/**
 * What the parent's `WorkerStartError` says first: the user's error as
 * `name: message`, with its stack frames in the user's own code, and then
 * what was being done.
 */
const summary = (message: string, cause: unknown): string => {
  if (cause === undefined) return message
  const error = Cause.isCause(cause) ? Cause.squash(cause) : cause
  const text = formatThrown(error)
  const lines = text.split("\n")
  const frames = lines.filter((line) => /^\s+at /.test(line))
  const head = lines.filter((line) => !/^\s+at /.test(line)).join("\n")
  const own = frames.filter((line) => !isInternalFrame(line)).slice(0, 8)
  return `${head}${own.length > 0 ? `\n${own.join("\n")}` : ""}\n(${message.replace(/:$/, "")})`
}

let ready = false

/**
 * The module builds a pool of itself when a worker imports it (a single-file
 * program without `if (import.meta.main)`): every worker would build a pool,
 * whose workers would build pools, without end. `ProcessPool` calls this, in
 * the worker, instead of spawning; the worker stops at once, and the parent's
 * layer fails with this message.
 */
const self: WorkerOfModule = {
  moduleUrl,
  refuse: (message) => fail(StartFailure.PoolOfItself, message)
}
;(globalThis as { [workerKey]?: WorkerOfModule })[workerKey] = self

const loaded = await import(moduleUrl).catch((cause) =>
  fail(StartFailure.ImportFailed, `the worker module ${moduleUrl} threw while it was imported:`, cause)
)
const served = loaded.default
if (!isHandlers(served)) {
  fail(
    StartFailure.NoHandlers,
    `the worker module ${moduleUrl} has no Worker.handlers(...) default export. ` +
      `Add \`export default Worker.handlers(MyTask.handler(...))\` to it.`
  )
}
const handlers = served.handlers

const scope = Effect.runSync(Scope.make())
let services: Context.Context<never> = Context.empty()
if (served.layer !== undefined) {
  const built = await Effect.runPromiseExit(Layer.buildWithScope(served.layer, scope))
  if (Exit.isFailure(built)) {
    fail(StartFailure.LayerFailed, `the services of the worker module ${moduleUrl} failed to build:`, built.cause)
  } else {
    services = built.value as Context.Context<never>
  }
}
const runFork = Effect.runForkWith(services)

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

/** The largest message that fits in a frame on its own, as `[message]`. */
const maxMessage = options.maxFrameSize - 2

const jobs = new Map<number, Job>()
const queue: Array<Job> = []
let queueHead = 0
let running = 0
let pumping = false
let shuttingDown = false

/** Queues a message; `binary` for the results of tasks declared with `serialization: "binary"`. */
const send = (message: Array<unknown>, binary = false): void => {
  let encoded: string | Binary
  let size: number
  try {
    if (binary) {
      encoded = Binary.encode(message)
      size = encoded.length
    } else {
      encoded = JSON.stringify(message)
      size = encoded.length > maxMessage / 3 ? Buffer.byteLength(encoded) : 0
    }
  } catch (cause) {
    // Only reachable when a codec produced a value the wire format cannot hold.
    return writer.send(JSON.stringify([FromWorker.Exit, message[1], ExitKind.ResultInvalid, formatThrown(cause)]))
  }
  if (size > maxMessage) {
    const issue = `the encoded result is ${size} bytes, more than maxFrameSize ` +
      `(${options.maxFrameSize} bytes); return large data by reference (a file path) or raise maxFrameSize`
    return writer.send(JSON.stringify([FromWorker.Exit, message[1], ExitKind.ResultInvalid, issue]))
  }
  // The parent releases a region of the shared file by its offset, once read: the key is unused.
  writer.send(sharedOut?.refer(0, encoded) ?? encoded)
}

const encodeExit = (
  codec: TaskCodec | undefined,
  exit: Exit.Exit<unknown, unknown>,
  interruptRequested: boolean
): [kind: number, value?: unknown] => {
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

/** Runs one payload: decode, handle. Never fails: the outcome is in the Exit. */
const runHandler = (handler: Task.Handler.Any, codec: TaskCodec, payload: unknown): Effect.Effect<unknown, unknown> => {
  const decoded = codec.decodePayload(payload)
  if (decoded instanceof Invalid) return Effect.fail(decoded)
  return runDecoded(handler, decoded)
}

/** The outcome of a batch: every item's `[kind, value]`, or, when all succeeded, their encoded values alone. */
type BatchOutcome = Array<[number, unknown?]> | { readonly values: unknown }

/**
 * Runs the items of a batch one after another in one fiber. Payloads are
 * decoded, and successes encoded, a whole chunk per codec call; the item by
 * item path is taken only to report which items failed.
 */
const runBatch = (
  job: Job,
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
        if (!(encoded instanceof Invalid)) outcome = { values: encoded }
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
          job.every = Math.max(1, Math.min(65_536, Math.floor(partBudget / Math.max(perItem, 1e-5))))
          const part = takePart()
          send(
            Array.isArray(part)
              ? [FromWorker.BatchPart, job.id, 1, part, job.every]
              : [FromWorker.BatchPart, job.id, 0, part.values, job.every],
            binary
          )
          writer.flush()
          if (channel.writableLength > 0) return Effect.flatMap(drained, () => step)
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
 * About how many milliseconds of work a batch part holds. A part costs a write
 * and a read; should the worker die, the items of its current part are the
 * ones whose fate is unknown.
 */
const partBudget = 0.5

/** Waits until everything written to the parent has left this process. */
const drained: Effect.Effect<void> = Effect.callback<void>((resume) => {
  if (channel.writableLength === 0) return resume(Effect.void)
  channel.once("drain", () => resume(Effect.void))
})

/** An item of a streaming task's output did not fit its success Schema. */
class ItemInvalid {
  readonly issue: string
  constructor(issue: string) {
    this.issue = issue
  }
}

/** Waits until the parent has acknowledged enough items for the stream to send more. */
const credit = (job: Job): Effect.Effect<void> =>
  job.credits > 0 ? Effect.void : Effect.callback<void>((resume) => {
    job.wake = () => resume(Effect.void)
    return Effect.sync(() => {
      job.wake = undefined
    })
  })

/**
 * Runs a streaming task: decodes the payload, runs the handler's stream, and
 * sends its items as they come, chunk by chunk, encoded with the success
 * Schema. The stream is paused, not buffered, while `window` items are
 * waiting for the consumer: it pulls no more until the parent acknowledges
 * some. Its end is the job's Exit.
 */
const runStream = (job: Job, handler: Task.Handler.Any, codec: TaskCodec): Effect.Effect<void, unknown> =>
  Effect.flatMap(streamModule, (Stream) => runStreamWith(Stream, job, handler, codec))

/** `effect/Stream`, loaded by the first streaming task: workers that serve none never pay for it. */
let streamModulePromise: Promise<typeof Stream> | undefined
const streamModule = Effect.promise(() => (streamModulePromise ??= import("effect/Stream")))

const runStreamWith = (
  Stream: typeof import("effect/Stream"),
  job: Job,
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
        send([FromWorker.Items, job.id, at === 0 && n === values.length ? values : values.slice(at, at + n)], binary)
        at += n
      }
      // Written now: the stream may go on computing without yielding to the event loop.
      writer.flush()
      if (at < values.length) return Effect.flatMap(credit(job), () => loop)
      return invalid === undefined ? Effect.void : Effect.fail(invalid)
    })
    return loop
  }
  return Stream.runForEachArray(stream, (items) => Effect.flatMap(credit(job), () => sendAll(items)))
}

/** Runs one decoded payload. */
const runDecoded = (handler: Task.Handler.Any, payload: unknown): Effect.Effect<unknown, unknown> => {
  try {
    return handler.run(payload) as Effect.Effect<unknown, unknown>
  } catch (defect) {
    return Effect.die(defect)
  }
}

/** The issue of a stream item that did not encode, if that is how the stream ended. */
const itemInvalid = (exit: Exit.Exit<unknown, unknown>): string | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const error = Cause.findErrorOption(exit.cause)
  return error._tag === "Some" && error.value instanceof ItemInvalid ? error.value.issue : undefined
}

/** Like {@link encodeExit}, but a payload that did not decode is reported as such. */
const payloadAwareExit = (codec: TaskCodec, exit: Exit.Exit<unknown, unknown>): [number, unknown?] => {
  if (Exit.isFailure(exit)) {
    const invalid = Cause.findErrorOption(exit.cause)
    if (invalid._tag === "Some" && invalid.value instanceof Invalid) {
      return [ExitKind.PayloadInvalid, invalid.value.issue]
    }
  }
  return encodeExit(codec, exit, false)
}

const finish = (job: Job, handler: Task.Handler.Any | undefined, exit: Exit.Exit<unknown, unknown>): void => {
  running--
  jobs.delete(job.id)
  const binary = handler?.task.serialization === "binary"
  if (job.batch && Exit.isSuccess(exit)) {
    const outcome = exit.value as BatchOutcome
    if (Array.isArray(outcome)) send([FromWorker.BatchExit, job.id, outcome], binary)
    else send([FromWorker.BatchValues, job.id, outcome.values], binary)
  } else if (Exit.isFailure(exit) && job.interruptRequested && Cause.hasInterruptsOnly(exit.cause)) {
    send([FromWorker.Exit, job.id, ExitKind.Interrupted])
  } else if (job.credits >= 0 && Exit.isSuccess(exit)) {
    // A stream's end: its items went before.
    send([FromWorker.Exit, job.id, ExitKind.Success, null])
  } else if (job.credits >= 0 && itemInvalid(exit) !== undefined) {
    send([FromWorker.Exit, job.id, ExitKind.ResultInvalid, itemInvalid(exit)])
  } else {
    const codec = handler === undefined ? undefined : codecFor(handler.task)
    const [kind, value] = job.batch
      ? encodeExit(undefined, exit, job.interruptRequested)
      : payloadAwareExit(codec!, exit)
    send([FromWorker.Exit, job.id, kind, value], binary)
  }
  if (options.maxMemory > 0 && !recycleRequested) checkMemory()
  if (shuttingDown && running === 0) return exitGracefully()
  // With nothing waiting there is nothing to pack the result with: write it now,
  // before anything else the handler left behind can hold the event loop.
  if (queueHead >= queue.length) writer.flush()
  else pump()
}

let recycleRequested = false
/** Past the memory ceiling, asks the parent for a replacement; the parent stops sending work here. */
const checkMemory = (): void => {
  const rss = process.memoryUsage.rss()
  if (rss <= options.maxMemory) return
  recycleRequested = true
  send([FromWorker.Recycle, `its resident set size of ${rss} bytes is over maxWorkerMemory (${options.maxMemory})`])
}

const start = (job: Job): void => {
  const handler = handlers.get(job.tag)
  if (handler === undefined) {
    jobs.delete(job.id)
    send([FromWorker.Exit, job.id, ExitKind.NotServed])
    return
  }
  const codec = codecFor(handler.task)
  if ((job.credits >= 0) !== handler.task.stream) {
    jobs.delete(job.id)
    const issue = handler.task.stream
      ? `task "${job.tag}" streams in this worker, but the caller's contract does not: are both on the same version?`
      : `task "${job.tag}" streams for the caller, but not in this worker: are both on the same version?`
    send([FromWorker.Exit, job.id, ExitKind.PayloadInvalid, issue])
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
  const fiber = runFork(effect)
  const exit = fiber.pollUnsafe()
  if (exit !== undefined) return finish(job, handler, exit)
  job.fiber = fiber
  fiber.addObserver((exit) => finish(job, handler, exit))
}

/**
 * Starts queued jobs while there is room. Results already computed are written
 * before the next job starts, so that when this process dies the parent knows
 * exactly which jobs had started: those are the only ones it fails.
 */
const pump = (): void => {
  if (pumping) return
  pumping = true
  while (running < options.concurrency && queueHead < queue.length) {
    const job = queue[queueHead]
    queue[queueHead++] = undefined as unknown as Job
    if (queueHead === queue.length) {
      queue.length = 0
      queueHead = 0
    }
    if (job.interruptRequested) continue
    if (writer.hasPending) writer.flush()
    start(job)
  }
  pumping = false
}

const onFrame = (json: string): void => {
  let messages: Array<Array<any>>
  try {
    messages = JSON.parse(json)
  } catch {
    return fail(1, "protocol error: a frame from the parent is not JSON")
  }
  if (!Array.isArray(messages)) return fail(1, "protocol error: a frame from the parent is not an array")
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]
    if (!Array.isArray(message)) return fail(1, "protocol error: a message from the parent is not an array")
    onMessage(message)
  }
}

const onMessage = (message: Array<any>): void => {
  switch (message[0]) {
    case ToWorker.Run:
    case ToWorker.RunBatch:
    case ToWorker.RunStream: {
      const stream = message[0] === ToWorker.RunStream
      const window = message[5]
      if (stream && (typeof window !== "number" || !(window >= 1))) {
        return fail(1, "protocol error: a streaming task without a window")
      }
      const job: Job = {
        id: message[1],
        tag: message[2],
        payload: message[3],
        batch: message[0] === ToWorker.RunBatch,
        every: message[0] === ToWorker.RunBatch && typeof message[5] === "number" ? Math.max(0, message[5]) : 0,
        credits: stream ? Math.floor(window) : -1,
        wake: undefined,
        parent: parentSpan(message[4]),
        fiber: undefined,
        interruptRequested: false
      }
      jobs.set(job.id, job)
      queue.push(job)
      return pump()
    }
    case ToWorker.Interrupt: {
      const job = jobs.get(message[1])
      if (job === undefined || job.interruptRequested) return
      job.interruptRequested = true
      if (job.fiber !== undefined) return job.fiber.interruptUnsafe()
      // Not started yet: it is skipped when its turn comes.
      jobs.delete(job.id)
      return send([FromWorker.Exit, job.id, ExitKind.Interrupted])
    }
    case ToWorker.Ack: {
      const job = jobs.get(message[1])
      if (job === undefined || job.credits < 0 || typeof message[2] !== "number") return
      job.credits += message[2]
      const wake = job.wake
      job.wake = undefined
      return wake?.()
    }
    case ToWorker.Ping:
      return send([FromWorker.Pong, message[1], process.memoryUsage.rss()])
    case ToWorker.Release:
      if (typeof message[1] === "number") sharedOut?.releaseAt(message[1])
      return
    case ToWorker.Shutdown: {
      shuttingDown = true
      if (running === 0) exitGracefully()
      return
    }
  }
}

let exiting = false
const exitGracefully = (): void => {
  if (exiting) return
  exiting = true
  writer.flush()
  Effect.runFork(Scope.close(scope, Exit.void)).addObserver(() => {
    channel.end(() => process.exit(0))
  })
}

const onBinary = (bytes: Buffer): void => {
  let message: unknown
  try {
    message = decodeBinary(bytes)
  } catch {
    return fail(1, "protocol error: a binary frame from the parent does not deserialize")
  }
  if (!Array.isArray(message)) return fail(1, "protocol error: a message from the parent is not an array")
  onMessage(message)
}

const reader = new FrameReader(
  onFrame,
  onBinary,
  options.maxFrameSize,
  // Payloads the parent wrote to the shared file, fd 4.
  options.shared === true ? (offset, length) => SharedFile.read(4, offset, length) : undefined
)
channel.on("data", (chunk: Buffer) => {
  const error = reader.push(chunk)
  if (error !== undefined) fail(1, `protocol error from the parent: ${error.message}`)
})

ready = true
send([FromWorker.Ready, process.pid, Array.from(handlers.keys())])
