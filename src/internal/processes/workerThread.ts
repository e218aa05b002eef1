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
import { BundleFailed } from "../wire/guard.ts"
import { framePort, receiveFrame } from "../wire/port.ts"
import { type FromWorkerMessage, Message, type ToWorkerMessage } from "../wire/protocol.ts"
import { decodeFrame, FrameWriter } from "../wire/transport.ts"
import { KillReason } from "./killReason.ts"
import {
  handshake,
  type Spawn,
  type SpawnOptions,
  spawnWith,
  stderrLimit,
  workerBoot,
  type WorkerConnection,
  type WorkerEvents,
  workerMain,
  type WorkerState
} from "./workerProcess.ts"

/** @internal */
export interface ThreadOptions extends Omit<SpawnOptions, "execArgv" | "processGroups"> {
  /** Node flags for the thread; `undefined` for the parent's, as `node:worker_threads` does. */
  readonly execArgv: ReadonlyArray<string> | undefined
  /** The heap limit of each thread, in bytes (`maxWorkerMemory`); 0 for none. */
  readonly maxHeap: number
}

/** @internal */
export class WorkerThread implements WorkerConnection {
  readonly thread: Worker
  readonly pid: number
  readonly writer: FrameWriter
  state: WorkerState = "starting"
  stderr = ""
  exitCode: number | null = null
  readonly signal = null
  killReason: KillReason | undefined = undefined
  crashReason: string | undefined = undefined
  startFailure: string | undefined = undefined
  readonly partialSince = 0
  readonly sharedBytes = 0
  /** Set once the pool has decided to end it: what it says after that is ignored. */
  private killed = false
  private readonly bundled: boolean
  private readonly events: WorkerEvents
  private readonly maxHeap: number

  get bundleFailed(): boolean {
    return this.bundled && this.exitCode === BundleFailed
  }

  constructor(options: ThreadOptions, events: WorkerEvents) {
    this.events = events
    this.bundled = options.bundle !== undefined
    this.maxHeap = options.maxHeap
    const [entry, ...args] = options.bundle === undefined ? [workerMain] : [workerBoot, options.bundle]
    this.thread = new Worker(entry, {
      argv: [...args, options.moduleUrl, JSON.stringify(options.worker)],
      ...(options.execArgv === undefined ? {} : { execArgv: [...options.execArgv] }),
      env: options.env ?? process.env,
      stdin: false,
      stderr: true,
      ...(options.maxHeap > 0
        ? { resourceLimits: { maxOldGenerationSizeMb: Math.max(1, Math.ceil(options.maxHeap / 2 ** 20)) } }
        : {})
    })
    this.pid = this.thread.threadId
    // Every message of one job and its microtasks, from any fiber, goes out in one post.
    this.writer = new FrameWriter(framePort(this.thread), queueMicrotask)
    this.thread.on("message", (data: unknown) => {
      if (this.killed) return
      const frame = receiveFrame(data, (frame, apart) => {
        const invalid = decodeFrame(frame, "worker", this.receive, apart)
        if (invalid !== undefined) this.kill(KillReason.protocol(invalid.reason))
      })
      if (!frame) this.kill(KillReason.protocol("a message from the thread that is no frame"))
    })
    this.thread.stderr.on("data", (chunk: Buffer) => {
      if (options.inheritStderr) process.stderr.write(chunk)
      this.stderr = (this.stderr + chunk.toString("utf8")).slice(-stderrLimit)
    })
    // An uncaught error ends the thread: it is said here, as a process would print it on its stderr.
    this.thread.on("error", (error: Error & { readonly code?: string }) => {
      this.crashReason = this.reasonOf(error)
      const text = `effect-process-pool worker thread ${this.pid}: ${error.stack ?? String(error)}\n`
      if (options.inheritStderr) process.stderr.write(text)
      this.stderr = (this.stderr + text).slice(-stderrLimit)
    })
    // Every message it posted before it ended has been received by then.
    this.thread.on("exit", (code) => {
      this.exitCode = code
      this.close()
    })
  }

  /** Why the thread died, as its tasks' `WorkerCrashed.reason` says it. */
  private reasonOf(error: Error & { readonly code?: string }): string {
    if (error.code === "ERR_WORKER_OUT_OF_MEMORY") {
      return `it ran out of memory: its heap passed maxWorkerMemory (${Math.round(this.maxHeap / 2 ** 20)} MB)`
    }
    return `an uncaught error in the thread: ${error.name}: ${error.message}`
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

  /** It said Ready: from now on it takes work. */
  ready(): void {
    this.state = "ready"
    this.events.onReady(this)
  }

  send(message: string | Binary): void {
    if (this.state === "dead") return
    this.writer.send(message)
  }

  sendMessage(message: ToWorkerMessage): void {
    if (this.state === "dead") return
    this.writer.send(JSON.stringify(message))
  }

  shutdown(): void {
    if (this.state === "dead" || this.state === "stopping") return
    this.state = "stopping"
    this.writer.send(JSON.stringify(Message.shutdown))
  }

  /** Ends the thread now: `terminate` stops even a loop that never yields. */
  kill(reason?: KillReason): void {
    if (this.state === "dead") return
    this.state = "stopping"
    this.killed = true
    if (reason !== undefined && this.killReason === undefined) this.killReason = reason
    void this.thread.terminate()
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
