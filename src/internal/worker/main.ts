/**
 * The entry point of every worker, a process or a thread.
 *
 * `node worker/main.ts <module url> <options json>` (a thread gets the same
 * arguments as its `argv`): imports the user's module, builds the services its
 * handlers need, says Ready, and then serves tasks until the parent asks it to
 * exit or its channel to the parent closes. Serving itself is the server's
 * (server.ts), and the channel, fd 3 of a process or the port of a thread, is
 * channel.ts's: this file wires the one to the other.
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
import * as Layer from "effect/Layer"
import type * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as References from "effect/References"
import * as Scope from "effect/Scope"
import type { ChildProcess } from "node:child_process"
import { fileURLToPath } from "node:url"
import { parentPort } from "node:worker_threads"
import { isHandlers } from "../../Worker.ts"
import { Binary, type BinaryMode } from "../wire/binary.ts"
import { formatThrown } from "../wire/codec.ts"
import { BundleFailed, bundleKey, workerKey, type WorkerOfModule } from "../wire/guard.ts"
import { ExitKind, FromWorker, type FromWorkerMessage, Message } from "../wire/protocol.ts"
import { decodeFrame } from "../wire/transport.ts"
import { type Channel, processChannel, threadChannel } from "./channel.ts"
import { makeServer } from "./server.ts"
import { forkTask, ForwardingRegistry, makePipeLogger } from "./telemetry.ts"

/** @internal */
export interface WorkerOptions {
  readonly workerConcurrency: number
  readonly maxFrameSize: number
  /** Resident set size in bytes past which the worker asks to be recycled; 0 for no ceiling. */
  readonly maxMemory: number
  /** Whether fds 4 and 5 are the shared files for large payloads and results (see sharedFile.ts). */
  readonly shared?: boolean
  /** Whether fd 6 is a pipe whose other end only the parent holds, for the watchdog (see `startWatchdog`). */
  readonly watchdog?: boolean
  /** The parent's minimum log level: lines below it are dropped here. Defaults to "Info". */
  readonly logLevel?: LogLevel.LogLevel
}

/** Exit codes that tell the parent why a worker could not start. */
const StartFailure = {
  ImportFailed: 70,
  NoHandlers: 71,
  LayerFailed: 72,
  /** The module builds a pool of itself when imported: see `refuse` below. */
  PoolOfItself: 73,
  /** A file of the bundle `effect` comes from could not be loaded: see worker/boot.ts. */
  BundleFailed
} as const

/** Whether an import failed on a file of the bundle `effect` comes from (worker/boot.ts sets `bundleKey`). */
const fromBundle = (cause: unknown): boolean => {
  const dir = (globalThis as { [bundleKey]?: string })[bundleKey]
  if (dir === undefined || !(cause instanceof Error)) return false
  return `${cause.message}\n${cause.stack}`.includes(fileURLToPath(dir))
}

const moduleUrl = process.argv[2]
const options: WorkerOptions = JSON.parse(process.argv[3] ?? "{}")

// Ctrl-C reaches the whole process group; the parent decides when workers stop.
if (parentPort === null) process.on("SIGINT", () => {})

const channel: Channel = parentPort === null ? processChannel(options) : threadChannel(parentPort)
const { sharedOut, writer } = channel
// Results already computed reach the parent even when a handler calls process.exit.
process.on("exit", () => writer.flush())

const fail = (code: number, message: string, cause?: unknown): never => {
  // Before Ready, the parent reads why, the user's own error first (see `summary`), and puts it in its
  // WorkerStartError: written to stderr too, which the parent forwards, it would print twice.
  if (!ready) writer.send(JSON.stringify(Message.startFailed(summary(message, cause))))
  // A bundle's failure is no start error: the pool starts the next worker plain, and this log is all that says why.
  if (!ready && code !== StartFailure.BundleFailed) return process.exit(code)
  process.stderr.write(`effect-process-pool worker ${process.pid}: ${message}\n`)
  if (cause !== undefined) {
    process.stderr.write(`${Cause.isCause(cause) ? Cause.pretty(cause) : formatThrown(cause)}\n`)
  }
  return process.exit(code)
}

/** Where this library's own files are (src/ or dist/), as a URL and as a path. */
const libraryUrl = new URL("../..", import.meta.url)
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
  fromBundle(cause)
    ? fail(StartFailure.BundleFailed, `the bundle of effect failed to load:`, cause)
    : fail(StartFailure.ImportFailed, `the worker module ${moduleUrl} threw while it was imported:`, cause)
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

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

/** The largest message that fits in a frame on its own, as `[message]`. */
const maxMessage = options.maxFrameSize - 2

/** The metric updates not yet sent: they go ahead of the next answer, so a caller sees them with its result. */
const sendMetrics = (): void => {
  const metrics = registry.take(services)
  if (metrics !== undefined) sendNow(metrics, false)
}

/** Queues a message; `binary` for the results of tasks declared with `serialization: "binary"`. */
const send = (message: FromWorkerMessage, binary: BinaryMode): void => {
  if (registry.dirty && message[0] !== FromWorker.Log) sendMetrics()
  sendNow(message, binary)
}

const sendNow = (message: FromWorkerMessage, binary: BinaryMode): void => {
  let encoded: string | Binary
  let size: number
  try {
    if (binary) {
      encoded = Binary.encode(message, binary === "transfer")
      size = encoded.length
    } else {
      encoded = JSON.stringify(message)
      size = encoded.length > maxMessage / 3 ? Buffer.byteLength(encoded) : 0
    }
  } catch (cause) {
    if (!hasId(message)) return dropped(message, formatThrown(cause))
    // Only reachable when a codec produced a value the wire format cannot hold.
    return writer.send(JSON.stringify(Message.exit(idOf(message), ExitKind.ResultInvalid, formatThrown(cause))))
  }
  if (size > maxMessage) {
    if (!hasId(message)) return dropped(message, `it is ${size} bytes, more than maxFrameSize`)
    const issue = `the encoded result is ${size} bytes, more than maxFrameSize ` +
      `(${options.maxFrameSize} bytes); return large data by reference (a file path) or raise maxFrameSize`
    return writer.send(JSON.stringify(Message.exit(idOf(message), ExitKind.ResultInvalid, issue)))
  }
  // The parent releases a region of the shared file by its offset, once read: the key is unused.
  writer.send(sharedOut?.refer(0, encoded) ?? encoded)
}

/** Whether a message answers a task: a log line or metric update that cannot travel is dropped instead. */
const hasId = (message: FromWorkerMessage): boolean =>
  message[0] !== FromWorker.Log && message[0] !== FromWorker.Metrics

const dropped = (message: FromWorkerMessage, why: string): void => {
  const what = message[0] === FromWorker.Log ? "a log line" : "metric updates"
  process.stderr.write(`effect-process-pool worker ${process.pid}: ${what} could not be sent to the parent: ${why}\n`)
}

/** The task a message answers: only those carry results large or strange enough to be refused. */
const idOf = (message: FromWorkerMessage): number => (message as ReadonlyArray<unknown>)[1] as number

// What the handlers, and the services they need, log goes to the parent, and their metrics are forwarded.
const registry = new ForwardingRegistry()
const observed = Context.make(Metric.MetricRegistry, registry as Metric.MetricRegistry).pipe(
  Context.add(References.CurrentLoggers, new Set([makePipeLogger((message) => send(message, false))])),
  Context.add(References.MinimumLogLevel, options.logLevel ?? "Info")
)

const scope = Effect.runSync(Scope.make())
let services: Context.Context<never> = observed
if (served.layer !== undefined) {
  const built = await Effect.runPromiseExitWith(observed)(Layer.buildWithScope(served.layer, scope))
  if (Exit.isFailure(built)) {
    fail(StartFailure.LayerFailed, `the services of the worker module ${moduleUrl} failed to build:`, built.cause)
  } else {
    services = Context.merge(observed, built.value as Context.Context<never>)
  }
}

/** Calls `done` once what was written to `stream` so far has left this process. */
const drainOutput = (stream: NodeJS.WriteStream, done: () => void): void => {
  if (stream.writableLength === 0 || !stream.writable) return done()
  // Writes complete in order: this one's callback comes after every write queued before it.
  stream.write("", () => done())
}

let exiting = false
const exitGracefully = (): void => {
  if (exiting) return
  exiting = true
  sendMetrics()
  writer.flush()
  Effect.runFork(Scope.close(scope, Exit.void)).addObserver(() => {
    // `process.exit` drops the writes still queued, and a pipe read slowly holds many of
    // them: what the handlers printed reaches stdout and stderr first.
    drainOutput(process.stdout, () =>
      drainOutput(process.stderr, () =>
        stopWatchdog(() => {
          channel.end()
        })))
  })
}

/**
 * A shell in this process's group that waits for the end of fd 6, a pipe whose
 * other end only the parent holds, and then kills the group. The parent kills
 * the group itself whenever it stops this worker or sees it die, so the
 * processes a handler starts go with the worker. The watchdog covers the one
 * case where the parent cannot: when it is SIGKILLed, the kernel kills this
 * process (see workerProcess.ts), and the watchdog the processes it started.
 */
const startWatchdog = (): ChildProcess | undefined => {
  if (options.watchdog !== true) return undefined
  const { spawn } = process.getBuiltinModule("node:child_process")
  try {
    const watchdog = spawn("/bin/sh", ["-c", "read line; kill -9 0"], { stdio: [6, "ignore", "ignore"] })
    watchdog.on("error", () => {})
    watchdog.unref()
    return watchdog
  } catch {
    return undefined
  }
}

/**
 * Ends the watchdog and waits until it is reaped. Left to the parent, which
 * kills what is left of the group once this process has exited, it would be
 * an orphan for init to reap; a parent running as pid 1 without an init never
 * would.
 */
const stopWatchdog = (done: () => void): void => {
  if (
    watchdog === undefined || watchdog.pid === undefined || watchdog.exitCode !== null || watchdog.signalCode !== null
  ) {
    return done()
  }
  watchdog.once("exit", () => done())
  watchdog.kill("SIGKILL")
}

const server = makeServer({
  handlers,
  runFork: forkTask(services),
  workerConcurrency: options.workerConcurrency,
  maxMemory: options.maxMemory,
  send,
  flush: writer.flush,
  drained: channel.drained,
  release: (offset) => sharedOut?.releaseAt(offset),
  onShutdown: exitGracefully,
  // A thread's own memory is its heap: the process's resident set is every thread's.
  rss: () => parentPort === null ? process.memoryUsage.rss() : process.memoryUsage().heapUsed
})

// A frame from the parent, JSON or binary: its messages go to the server, once they are known to be messages.
channel.listen((frame, apart) => {
  const invalid = decodeFrame(frame, "parent", server.receive, apart)
  if (invalid !== undefined) fail(1, `protocol error: ${invalid.reason}`)
}, (reason) => fail(1, reason))

ready = true
send(Message.ready(process.pid), false)
// Ready goes out first: starting the watchdog takes a few milliseconds.
writer.flush()
const watchdog = startWatchdog()
