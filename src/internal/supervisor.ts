/**
 * One worker process: spawn, ready handshake, stderr capture, exit detection
 * and kill. The pool-wide policy (how many, when to replace, back-off) lives in
 * the dispatcher, which owns a set of these.
 *
 * @internal
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import type { Socket } from "node:net"
import { type Binary, decodeBinary } from "./binary.ts"
import { FromWorker, ToWorker } from "./protocol.ts"
import { SharedFile } from "./sharedFile.ts"
import { FrameReader, FrameWriter } from "./transport.ts"
import type { WorkerOptions } from "./workerMain.ts"

/** @internal */
export interface SpawnOptions {
  readonly moduleUrl: string
  readonly execArgv: ReadonlyArray<string>
  readonly env: NodeJS.ProcessEnv | undefined
  readonly worker: WorkerOptions
  /** Forward the children's stderr to the parent's stderr. */
  readonly inheritStderr: boolean
}

/** @internal */
export interface WorkerEvents {
  readonly onReady: (worker: WorkerProcess) => void
  readonly onMessage: (worker: WorkerProcess, message: Array<any>) => void
  /** Called once, after the process has exited and every byte it wrote has been read. */
  readonly onClose: (worker: WorkerProcess) => void
}

const workerMain = new URL(import.meta.url.endsWith(".ts") ? "./workerMain.ts" : "./workerMain.js", import.meta.url)
  .pathname

const stderrLimit = 16 * 1024

// On Linux, setpriv makes the kernel SIGKILL the worker when the parent dies,
// even if the worker's event loop is stuck in a CPU-bound task. Elsewhere the
// worker exits when it sees its pipe to the parent close.
const setpriv = process.platform === "linux"
  ? ["/usr/bin/setpriv", "/bin/setpriv"].find((path) => {
    try {
      fs.accessSync(path, fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })
  : undefined

/** @internal */
export type WorkerState = "starting" | "ready" | "retiring" | "stopping" | "dead"

/** @internal */
export class WorkerProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly writer: FrameWriter
  readonly reader: FrameReader
  state: WorkerState = "starting"
  /** The last bytes the child wrote to stderr. */
  stderr = ""
  exitCode: number | null = null
  signal: NodeJS.Signals | null = null
  /** Set when the pool ended this worker on purpose, to explain the crash. */
  killReason: string | undefined = undefined
  /** Set once the pool has decided to kill it: what it says after that is ignored. */
  killed = false
  /** Tasks sent to this worker and not yet answered, in the order they were sent. */
  readonly inflight: Array<{ readonly id: number }> = []
  tasksDone = 0
  /** When its last reply arrived, in `performance.now()` milliseconds. */
  lastReplyAt = 0
  /** Since when it has had nothing in flight; 0 while busy. */
  idleSince = 0
  /** When the outstanding ping was sent; 0 when none is outstanding. */
  pingSentAt = 0
  pingSeq = 0
  /** Whether the outstanding ping was sent while the worker was idle. */
  pingIdle = false
  /** Resident set size in bytes, as of its last answer to a ping. */
  rss = 0
  /** Why it could not start, in its own words (the user's error first), when it said so before exiting. */
  startFailure: string | undefined = undefined
  /** Whether it ever said Ready: a worker that dies before that failed to start. */
  everReady = false
  /** Set when the pool ended this worker on purpose and has already arranged for what replaces it. */
  planned = false

  /** Where large payloads for this worker are written (its fd 4); `undefined` where there is no tmpfs. */
  readonly shared: SharedFile | undefined
  /** Where the worker writes its large results (its fd 5), with `shared`. */
  private readonly sharedResults: SharedFile | undefined

  private readonly events: WorkerEvents

  constructor(options: SpawnOptions, events: WorkerEvents) {
    this.events = events
    const shared = SharedFile.open()
    const sharedResults = shared === undefined ? undefined : SharedFile.open()
    if (sharedResults === undefined) shared?.close()
    this.shared = sharedResults === undefined ? undefined : shared
    this.sharedResults = sharedResults
    const worker: WorkerOptions = { ...options.worker, shared: this.shared !== undefined }
    const args = [...options.execArgv, workerMain, options.moduleUrl, JSON.stringify(worker)]
    const [command, argv] = setpriv === undefined
      ? [process.execPath, args]
      : [setpriv, ["--pdeathsig", "KILL", "--", process.execPath, ...args]]
    try {
      this.child = spawn(command, argv, {
        // fds 4 and 5 are the shared files, when there are.
        stdio: ["ignore", "inherit", "pipe", "pipe", this.shared?.fd ?? "ignore", sharedResults?.fd ?? "ignore"],
        env: options.env,
        windowsHide: true
      })
    } catch (error) {
      this.shared?.close()
      sharedResults?.close()
      throw error
    }
    this.pid = this.child.pid ?? -1
    const channel = this.child.stdio[3] as Socket
    // Flushed once the current job and its microtasks are done: every message sent meanwhile, from
    // any fiber of the same scheduler batch, goes out in the same write, without waiting a loop phase.
    this.writer = new FrameWriter(channel, queueMicrotask)
    const reader = new FrameReader(
      (json) => this.receiveJson(json),
      (bytes) => this.receiveBinary(bytes),
      options.worker.maxFrameSize,
      sharedResults === undefined ? undefined : (offset, length) => {
        const bytes = SharedFile.read(sharedResults.fd, offset, length)
        // Read: the worker may reuse the region.
        this.send(JSON.stringify([ToWorker.Release, offset]))
        return bytes
      }
    )
    this.reader = reader
    channel.on("data", (chunk: Buffer) => {
      const error = reader.push(chunk)
      if (error !== undefined) this.kill(`protocol error: ${error.message}`)
    })
    channel.on("error", () => {})
    this.child.stderr!.on("data", (chunk: Buffer) => {
      if (options.inheritStderr) process.stderr.write(chunk)
      this.stderr = (this.stderr + chunk.toString("utf8")).slice(-stderrLimit)
    })
    this.child.on("error", (error) => {
      this.stderr += `\n${error.message}`
    })
    // "close" comes after "exit" and after every stdio stream has ended, so
    // every result the worker wrote before dying has been received.
    this.child.on("close", (code, signal) => {
      this.shared?.close()
      this.sharedResults?.close()
      this.exitCode = code
      this.signal = signal
      this.state = "dead"
      this.events.onClose(this)
    })
  }

  private receiveJson(json: string): void {
    if (this.killed) return
    let messages: Array<Array<any>>
    try {
      messages = JSON.parse(json)
    } catch {
      return this.kill("protocol error: a frame from the worker is not JSON")
    }
    if (!Array.isArray(messages)) return this.kill("protocol error: a frame from the worker is not an array")
    this.receive(messages)
  }

  private receiveBinary(bytes: Buffer): void {
    if (this.killed) return
    let message: Array<any>
    try {
      message = decodeBinary(bytes) as Array<any>
    } catch {
      return this.kill("protocol error: a binary frame from the worker does not deserialize")
    }
    this.receive([message])
  }

  private receive(messages: Array<Array<any>>): void {
    for (let i = 0; i < messages.length && !this.killed; i++) {
      const message = messages[i]
      if (!Array.isArray(message)) return this.kill("protocol error: a message from the worker is not an array")
      if (message[0] === FromWorker.StartFailed && this.state === "starting") {
        // It exits next: the reason is kept for the start error.
        this.startFailure = String(message[1]).slice(0, stderrLimit)
      } else if (message[0] === FromWorker.Ready && this.state === "starting") {
        this.state = "ready"
        this.everReady = true
        this.events.onReady(this)
      } else if (this.state === "starting") {
        return this.kill("protocol error: the worker spoke before it was ready")
      } else {
        // A reply means the worker has read its payload: the payload's region of the shared file is free.
        const kind = message[0]
        if (kind === FromWorker.Exit || kind === FromWorker.BatchExit || kind === FromWorker.BatchValues) {
          this.shared?.release(message[1])
        }
        this.events.onMessage(this, message)
      }
    }
  }

  get alive(): boolean {
    return this.state !== "dead"
  }

  /**
   * Queues one message for this tick's write. A large message with an `id`
   * (a Run or RunBatch) is written to the shared file at once, and only its
   * reference takes the pipe; the region is freed when the reply to `id` comes.
   */
  send(message: string | Binary, id?: number): void {
    if (this.state === "dead") return
    const shared = id === undefined ? undefined : this.shared?.refer(id, message)
    this.writer.send(shared ?? message)
  }

  /** Asks the worker to finish what it runs and exit. */
  shutdown(): void {
    if (this.state === "dead" || this.state === "stopping") return
    this.state = "stopping"
    this.planned = true
    this.writer.send(JSON.stringify([ToWorker.Shutdown]))
  }

  /**
   * Ends the worker now. `reason` explains the crash to the tasks it was
   * running. From this moment it gets no work, and nothing more it says is
   * believed.
   */
  kill(reason?: string): void {
    if (this.state === "dead") return
    this.state = "stopping"
    this.killed = true
    if (reason !== undefined && this.killReason === undefined) this.killReason = reason
    try {
      this.child.kill("SIGKILL")
    } catch {
      // already gone
    }
  }
}
