/**
 * One worker thread and its port: the same worker entry as a process
 * (worker/main.ts), the same messages and frames, on `node:worker_threads`.
 * What the pool sees of it is a `WorkerConnection`, as of a process.
 *
 * A thread shares its process: the parent's death ends it, so it needs no
 * watchdog and no process group; `maxWorkerMemory` is its heap's limit
 * (`resourceLimits`), past which it dies rather than being recycled.
 *
 * @internal
 */
import { Worker } from "node:worker_threads"
import type { Binary } from "../wire/binary.ts"
import { formatThrown } from "../wire/codec.ts"
import { framePort, receiveFrame } from "../wire/port.ts"
import type { FromWorkerMessage } from "../wire/protocol.ts"
import { decodeFrame, FrameWriter } from "../wire/transport.ts"
import { KillReason } from "./killReason.ts"
import {
  handshake,
  type Limit,
  type Spawn,
  type SpawnOptions,
  spawnWith,
  stderrLimit,
  WorkerBase,
  workerBoot,
  type WorkerConnection,
  type WorkerEvents,
  workerMain
} from "./workerProcess.ts"

/**
 * The variables of `env` that have a value: one set to `undefined` is left
 * out, as `child_process.spawn` does for a process, where a thread would see
 * the string "undefined".
 */
const definedOnly = (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined))

/** @internal */
export interface ThreadOptions extends Omit<SpawnOptions, "execArgv" | "processGroups"> {
  /** Node flags for the thread; `undefined` for the parent's, as `node:worker_threads` does. */
  readonly execArgv: ReadonlyArray<string> | undefined
  /** The heap limit of each thread, in bytes; 0 for none. */
  readonly maxHeap: number
  /** The option that set it. */
  readonly heapLimit: Limit["name"]
}

/** How long a terminated thread may take to end before it is counted as ended. */
const terminateGrace = 2_000

/** @internal */
export class WorkerThread extends WorkerBase implements WorkerConnection {
  /** Undefined when Node refused to start it: it is then a worker that failed to start. */
  readonly thread: Worker | undefined
  readonly pid: number
  readonly writer: FrameWriter
  readonly signal = null
  crashReason: string | undefined = undefined
  readonly partialSince = 0
  readonly sharedBytes = 0
  private readonly maxHeap: number
  private readonly heapLimit: Limit["name"]

  constructor(options: ThreadOptions, events: WorkerEvents) {
    super(events, options.bundle !== undefined)
    this.maxHeap = options.maxHeap
    this.heapLimit = options.heapLimit
    const [entry, ...args] = options.bundle === undefined ? [workerMain] : [workerBoot, options.bundle]
    let thread: Worker | undefined
    try {
      thread = new Worker(entry, {
        argv: [...args, options.moduleUrl, JSON.stringify(options.worker)],
        ...(options.execArgv === undefined ? {} : { execArgv: [...options.execArgv] }),
        env: definedOnly(options.env ?? process.env),
        stdin: false,
        stderr: true,
        ...(options.maxHeap > 0
          ? { resourceLimits: { maxOldGenerationSizeMb: Math.max(1, Math.ceil(options.maxHeap / 2 ** 20)) } }
          : {})
      })
    } catch (error) {
      // Node refused to start it (an environment it does not take): a start that failed, said as such.
      this.stderr = formatThrown(error)
      this.exitCode = 1
      setImmediate(() => this.close())
    }
    this.thread = thread
    this.pid = thread?.threadId ?? -1
    // Every message of one job and its microtasks, from any fiber, goes out in one post.
    this.writer = new FrameWriter(framePort(thread ?? { postMessage: () => {} }), queueMicrotask)
    if (thread === undefined) return
    thread.on("message", (data: unknown) => {
      if (this.killed) return
      const frame = receiveFrame(data, (frame, apart) => {
        const invalid = decodeFrame(frame, "worker", this.receive, apart)
        if (invalid !== undefined) this.kill(KillReason.protocol(invalid.reason))
      })
      if (!frame) this.kill(KillReason.protocol("a message from the thread that is no frame"))
    })
    thread.stderr.on("data", (chunk: Buffer) => {
      if (options.inheritStderr) process.stderr.write(chunk)
      this.stderr = (this.stderr + chunk.toString("utf8")).slice(-stderrLimit)
    })
    // An uncaught error ends the thread: it is said here, as a process would print it on its stderr. What
    // was thrown may be anything, `null` included.
    thread.on("error", (error: unknown) => {
      this.crashReason = this.reasonOf(error)
      const text = `effect-process-pool worker thread ${this.pid}: ${formatThrown(error)}\n`
      if (options.inheritStderr) process.stderr.write(text)
      this.stderr = (this.stderr + text).slice(-stderrLimit)
    })
    // Every message it posted before it ended has been received by then.
    thread.on("exit", (code) => {
      this.exitCode = code
      this.close()
    })
  }

  /** Why the thread died, as its tasks' `WorkerCrashed.reason` says it. */
  private reasonOf(error: unknown): string {
    if (
      typeof error === "object" && error !== null && (error as { code?: unknown }).code === "ERR_WORKER_OUT_OF_MEMORY"
    ) {
      if (this.maxHeap === 0) return "it ran out of memory: its heap passed V8's limit"
      this.limit = { name: this.heapLimit, value: this.maxHeap }
      return `it ran out of memory: its heap passed ${this.heapLimit} (${Math.round(this.maxHeap / 2 ** 20)} MB)`
    }
    return `an uncaught error in the thread: ${
      error instanceof Error ? `${error.name}: ${error.message}` : formatThrown(error)
    }`
  }

  private close(): void {
    if (this.state === "dead") return
    this.state = "dead"
    this.events.onClose(this)
  }

  /** One message from the thread; false once it is ended: what it says after that is ignored. */
  private readonly receive = (message: FromWorkerMessage): boolean => {
    if (handshake(this, message)) this.events.onMessage(this, message)
    return !this.killed
  }

  send(message: string | Binary): void {
    if (this.state === "dead") return
    this.writer.send(message)
  }

  /**
   * Ends the thread now: `terminate` stops even a loop that never yields. A
   * thread inside a call that does not return to JavaScript (a synchronous
   * child process, a blocking read, an addon) ends only once that call does:
   * after `terminateGrace` it is counted as ended, so that its tasks get
   * their outcome and the pool goes on, and it is left to end by itself.
   */
  kill(reason?: KillReason): void {
    if (!this.markKilled(reason)) return
    if (this.thread === undefined) return
    void this.thread.terminate().catch(() => {})
    setTimeout(() => {
      if (this.state === "dead") return
      this.thread?.unref()
      this.crashReason ??= `it did not end within ${terminateGrace} ms of being terminated (a call outside JavaScript)`
      this.close()
    }, terminateGrace).unref()
  }
}

/**
 * Starts workers as threads of this process. Once a thread fails to load its
 * bundle, the threads after it start on the plain path, as processes do.
 *
 * @internal
 */
export const spawnThread = (options: ThreadOptions): Spawn =>
  spawnWith(options, (current, events) => new WorkerThread(current, events))
