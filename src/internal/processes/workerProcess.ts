/**
 * One worker process and its pipes: spawn, the ready handshake, framing on
 * fd 3, the shared files, stderr capture, exit detection and kill. What the
 * pool does with a worker lives elsewhere: the fleet in supervisor.ts, the
 * tasks in dispatcher.ts.
 *
 * A `WorkerConnection` is what those two see of a worker, so that a worker
 * served in memory can stand in for a process in tests.
 *
 * @internal
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import type { Socket } from "node:net"
import * as path from "node:path"
import type { LimitExceeded } from "../../PoolError.ts"
import type { Permissions } from "../../ProcessPool.ts"
import type { Binary } from "../wire/binary.ts"
import { BundleFailed } from "../wire/guard.ts"
import { FromWorker, type FromWorkerMessage, Message, type ToWorkerMessage } from "../wire/protocol.ts"
import { SharedFile } from "../wire/sharedFile.ts"
import { decodeFrame, FrameReader, FrameWriter } from "../wire/transport.ts"
import type { WorkerOptions } from "../worker/main.ts"
import { discard, type PlanFile } from "./bundle.ts"
import { KillReason } from "./killReason.ts"
import { permissionFlags } from "./permissions.ts"

/** @internal */
export interface SpawnOptions {
  readonly moduleUrl: string
  readonly execArgv: ReadonlyArray<string>
  readonly env: NodeJS.ProcessEnv | undefined
  readonly worker: WorkerOptions
  /** Forward the children's stderr to the parent's stderr. */
  readonly inheritStderr: boolean
  /** Start each worker in a process group of its own: see `processGroupsWork`. */
  readonly processGroups: boolean
  /** The plan of the worker's hooks (see bundle.ts): `effect` from a bundle; undefined for the plain path. */
  readonly bundle?: PlanFile | undefined
  /** The limit of each worker's heap in bytes (`maxWorkerHeap`); 0 for Node's own. */
  readonly maxHeap: number
  /** Start it under Node's permission model, allowed these (see permissions.ts). */
  readonly permissions: Permissions | undefined
}

/** What a worker tells the pool. @internal */
export interface WorkerEvents {
  readonly onReady: (worker: WorkerConnection) => void
  /** Every message after Ready, decoded. */
  readonly onMessage: (worker: WorkerConnection, message: FromWorkerMessage) => void
  /** Called once, after the worker has exited and every byte it wrote has been read. */
  readonly onClose: (worker: WorkerConnection) => void
}

/** What the pool sees of one worker, a process or one served in memory. @internal */
export interface WorkerConnection {
  readonly pid: number
  /** "starting" until Ready, "ready", "stopping" once asked to exit or killed, "dead" once closed. */
  readonly state: WorkerState
  /** The last bytes it wrote to stderr. */
  readonly stderr: string
  readonly exitCode: number | null
  readonly signal: NodeJS.Signals | null
  /** Why the pool killed it, when it did. */
  readonly killReason: KillReason | undefined
  /** Why it died by itself, when it can tell (a thread past its resource limits): `WorkerCrashed.reason`. */
  readonly crashReason?: string | undefined
  /** The pool's limit it passed, when it died or was killed for that: its tasks fail with `LimitExceeded`. */
  readonly limit?: Limit | undefined
  /** Its CPU time so far in milliseconds, where the system tells it (`maxCpuTime`); undefined elsewhere. */
  readonly cpuTime?: (() => number | undefined) | undefined
  /** Why it could not start, in its own words, when it said so. */
  readonly startFailure: string | undefined
  /** Whether it was started on a bundle of `effect` and could not load it (see bundle.ts): the next takes the plain path. */
  readonly bundleFailed?: boolean
  /** Since when part of a frame from it has waited for the rest, in `performance.now()` ms; 0 when none. */
  readonly partialSince: number
  /** Payload bytes sent to it through its shared file rather than its pipe. */
  readonly sharedBytes: number
  /** Queues one encoded message for this tick's write; `id` marks a Run, which may take the shared file. */
  send(message: string | Binary, id?: number): void
  /** Queues one control message. */
  sendMessage(message: ToWorkerMessage): void
  /** Asks it to finish what it runs and exit. */
  shutdown(): void
  /** Ends it now; `reason` explains the crash to the tasks it was running. */
  kill(reason?: KillReason): void
}

/** Starts a worker: a process by default. @internal */
export type Spawn = (events: WorkerEvents) => WorkerConnection

const workerScript = (name: string): string =>
  new URL(import.meta.url.endsWith(".ts") ? `../worker/${name}.ts` : `../worker/${name}.js`, import.meta.url).pathname
/** The worker's entry point, on the plain path. @internal */
export const workerMain = workerScript("main")
/** The worker's entry point when it loads `effect` from a bundle. @internal */
export const workerBoot = workerScript("boot")

/** A limit of the pool's that a worker passed: see `LimitExceeded`. @internal */
export interface Limit {
  readonly name: LimitExceeded["limit"]
  readonly value: number
}

/** What V8 prints before it aborts a process whose heap is full. */
const heapExhausted = /FATAL ERROR: .*JavaScript heap out of memory/

/** How much of a worker's stderr is kept, from its end. @internal */
export const stderrLimit = 16 * 1024

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

/**
 * Each worker leads a process group of its own, with every process it starts
 * (unless one leaves it on purpose, with `setsid` or `detached: true`). When
 * the pool kills a worker, it kills the group; when a worker exits, by itself
 * or when asked to, the pool kills what is left of its group. So the processes
 * a handler starts never outlive their worker, nor hold its outcome back.
 *
 * When the parent itself is SIGKILLed, no code of it runs: on Linux the kernel
 * kills the workers (see `setpriv`), and the watchdog of each worker, a shell
 * in its group that waits for the end of a pipe only the parent holds (fd 6
 * in the worker), kills the rest of the group. Without `/bin/sh` there is no
 * watchdog, and such processes outlive a SIGKILLed parent. On Windows there
 * are no process groups: only the worker itself is killed.
 *
 * A process group comes with a session of its own (`setsid`), and on Linux
 * with scheduling autogroups a session is also a scheduling group: the parent
 * then gets one share of the CPU, and each worker one, rather than each
 * thread one. With more busy processes than cores, a parent that is the
 * bottleneck (a `map` of tiny items) runs measurably slower. The pool option
 * `processGroups: false` trades the clean-up of helpers for that.
 */
const processGroupsWork = process.platform !== "win32"

/** Kills a worker's process group; a group that is gone already is no error. */
const killGroup = (pid: number): void => {
  // pid 0 or -1 would name the parent's own group, or every process it may signal.
  if (pid <= 0) return
  try {
    process.kill(-pid, "SIGKILL")
  } catch {
    // gone
  }
}

/** @internal */
export type WorkerState = "starting" | "ready" | "stopping" | "dead"

/** A worker, a process or a thread, as its first messages change it. @internal */
export interface Starting {
  readonly state: WorkerState
  startFailure: string | undefined
  /** It said Ready. */
  ready(): void
  kill(reason: KillReason): void
}

/**
 * Reads a message of a worker that may not be ready yet: why it could not
 * start, kept for the start error (it exits next); its Ready; or, before
 * Ready, anything but what building its services logged or measured, which
 * breaks the protocol. True for a message the pool reads on.
 *
 * @internal
 */
export const handshake = (worker: Starting, message: FromWorkerMessage): boolean => {
  if (worker.state !== "starting") return true
  const kind = message[0]
  if (kind === FromWorker.StartFailed) worker.startFailure = message[1].slice(0, stderrLimit)
  else if (kind === FromWorker.Ready) worker.ready()
  else if (kind === FromWorker.Log || kind === FromWorker.Metrics) return true
  else worker.kill(KillReason.protocol("the worker spoke before it was ready"))
  return false
}

/**
 * What a worker process and a worker thread share: their state, what the
 * pool learns of their end, and the messages that go out alike. Each has its
 * own transport (`writer`), start and end.
 *
 * @internal
 */
export abstract class WorkerBase {
  abstract readonly pid: number
  abstract readonly writer: FrameWriter
  state: WorkerState = "starting"
  /** The last bytes it wrote to stderr. */
  stderr = ""
  exitCode: number | null = null
  /** Set when the pool ended this worker on purpose, to explain the crash. */
  killReason: KillReason | undefined = undefined
  /** Set once the pool has decided to end it: what it says after that is ignored. */
  killed = false
  /** Why it could not start, in its own words (the user's error first), when it said so before exiting. */
  startFailure: string | undefined = undefined
  /** Set when it died of its heap limit. */
  limit: Limit | undefined = undefined
  protected readonly events: WorkerEvents
  /** Whether it loads `effect` from a bundle. */
  private readonly bundled: boolean

  constructor(events: WorkerEvents, bundled: boolean) {
    this.events = events
    this.bundled = bundled
  }

  /** Whether it was started on a bundle of `effect` and could not load it (see bundle.ts). */
  get bundleFailed(): boolean {
    return this.bundled && this.exitCode === BundleFailed
  }

  /** It said Ready: from now on it takes work. */
  ready(): void {
    this.state = "ready"
    // Each kind of worker (WorkerProcess, WorkerThread) is a WorkerConnection; this class alone is not.
    this.events.onReady(this as unknown as WorkerConnection)
  }

  sendMessage(message: ToWorkerMessage): void {
    if (this.state === "dead") return
    this.writer.send(JSON.stringify(message))
  }

  /** Asks the worker to finish what it runs and exit. */
  shutdown(): void {
    if (this.state === "dead" || this.state === "stopping") return
    this.state = "stopping"
    this.writer.send(JSON.stringify(Message.shutdown))
  }

  /**
   * Marks the worker as ended by the pool, with `reason` to explain the crash
   * to the tasks it was running; false when it is dead already. From this
   * moment it gets no work, and nothing more it says is believed.
   */
  protected markKilled(reason: KillReason | undefined): boolean {
    if (this.state === "dead") return false
    this.state = "stopping"
    this.killed = true
    if (reason !== undefined && this.killReason === undefined) this.killReason = reason
    return true
  }
}

/** @internal */
export class WorkerProcess extends WorkerBase implements WorkerConnection {
  readonly child: ChildProcess
  readonly pid: number
  readonly writer: FrameWriter
  readonly reader: FrameReader
  signal: NodeJS.Signals | null = null
  /** `maxWorkerHeap`, or 0. */
  private readonly maxHeap: number
  private exited = false
  private channelClosed = false
  private stderrClosed = false

  /** Where large payloads for this worker are written (its fd 4); `undefined` where there is no tmpfs. */
  readonly shared: SharedFile | undefined
  /** Where the worker writes its large results (its fd 5), with `shared`. */
  private readonly sharedResults: SharedFile | undefined
  private readonly watchdogPipe: Socket | undefined

  /** Whether this worker leads a process group, killed with it. */
  private readonly grouped: boolean

  constructor(options: SpawnOptions, events: WorkerEvents) {
    super(events, options.bundle !== undefined)
    const processGroups = processGroupsWork && options.processGroups
    this.grouped = processGroups
    const shared = SharedFile.open()
    const sharedResults = shared === undefined ? undefined : SharedFile.open()
    if (sharedResults === undefined) shared?.close()
    this.shared = sharedResults === undefined ? undefined : shared
    this.sharedResults = sharedResults
    this.maxHeap = options.maxHeap
    // Under permissions that allow no process, the watchdog could not start, and there is nothing for it to do.
    const watchdog = processGroups &&
      (options.permissions === undefined || options.permissions.allowChildProcess === true)
    const worker: WorkerOptions = { ...options.worker, shared: this.shared !== undefined, watchdog }
    const main = options.bundle === undefined ? [workerMain] : [workerBoot, options.bundle]
    const args = [
      ...options.execArgv,
      ...(options.maxHeap > 0 ? [`--max-old-space-size=${Math.max(1, Math.ceil(options.maxHeap / 2 ** 20))}`] : []),
      ...(options.permissions === undefined ? [] : permissionFlags(options.permissions, options.moduleUrl, {
        bundle: options.bundle === undefined ? undefined : path.dirname(options.bundle),
        compileCache: (options.env ?? process.env).NODE_COMPILE_CACHE
      })),
      ...main,
      options.moduleUrl,
      JSON.stringify(worker)
    ]
    const [command, argv] = setpriv === undefined
      ? [process.execPath, args]
      : [setpriv, ["--pdeathsig", "KILL", "--", process.execPath, ...args]]
    try {
      this.child = spawn(command, argv, {
        // fds 4 and 5 are the shared files, when there are; fd 6 is the watchdog's pipe.
        stdio: [
          "ignore",
          "inherit",
          "pipe",
          "pipe",
          this.shared?.fd ?? "ignore",
          sharedResults?.fd ?? "ignore",
          processGroups ? "pipe" : "ignore"
        ],
        env: options.env,
        // A process group of its own: see `processGroups`.
        detached: processGroups,
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
      (json) => this.receiveFrame(json),
      (bytes) => this.receiveFrame(bytes),
      options.worker.maxFrameSize,
      sharedResults === undefined ? undefined : (offset, length) => {
        const bytes = SharedFile.read(sharedResults.fd, offset, length)
        // Read: the worker may reuse the region.
        this.sendMessage(Message.release(offset))
        return bytes
      }
    )
    this.reader = reader
    channel.on("data", (chunk: Buffer) => {
      const error = reader.push(chunk)
      if (error !== undefined) this.kill(KillReason.protocol(error.message))
    })
    channel.on("error", () => {})
    // The parent's end of the watchdog's pipe (see `processGroups`): held, never written, never read from.
    this.watchdogPipe = ((this.child.stdio as ReadonlyArray<unknown>)[6] ?? undefined) as Socket | undefined
    this.watchdogPipe?.on("error", () => {})
    this.child.stderr!.on("data", (chunk: Buffer) => {
      if (options.inheritStderr) process.stderr.write(chunk)
      this.stderr = (this.stderr + chunk.toString("utf8")).slice(-stderrLimit)
    })
    this.child.on("error", (error) => {
      this.stderr += `\n${error.message}`
    })
    // The worker is over once it has exited and its pipe has ended: every result it wrote
    // before dying has been received then. Not once every stdio stream has closed ("close"):
    // a process it started, which inherited its stderr, would hold its outcome until it ends.
    this.child.on("exit", (code, signal) => {
      this.exitCode = code
      this.signal = signal
      this.exited = true
      if (this.grouped) killGroup(this.pid)
      this.settle()
    })
    channel.on("close", () => {
      this.channelClosed = true
      this.settle()
    })
    this.child.stderr!.on("close", () => {
      this.stderrClosed = true
    })
    // After every stream has closed: the only way out when the process could not be spawned.
    this.child.on("close", (code, signal) => {
      this.exitCode ??= code
      this.signal ??= signal
      this.exited = this.channelClosed = this.stderrClosed = true
      this.settle()
    })
  }

  /** Ends the worker once it has exited and its pipe has ended. */
  private settle(): void {
    if (!this.exited || !this.channelClosed || this.state === "dead") return
    // Its stderr has usually ended too, its group being dead. If a process that left the
    // group holds it, what the worker wrote there is read first (the poll phase comes
    // before `setImmediate`), for a start error to carry it.
    if (this.stderrClosed) this.close()
    else setImmediate(() => this.close())
  }

  private close(): void {
    if (this.state === "dead") return
    this.state = "dead"
    // V8 says so on stderr, then aborts: with maxWorkerHeap, the limit that was passed was the pool's.
    if (
      this.maxHeap > 0 && this.killReason === undefined && this.signal === "SIGABRT" && heapExhausted.test(this.stderr)
    ) {
      this.limit = { name: "maxWorkerHeap", value: this.maxHeap }
    }
    this.shared?.close()
    this.sharedResults?.close()
    this.watchdogPipe?.destroy()
    this.events.onClose(this)
  }

  get partialSince(): number {
    return this.reader.partialSince
  }

  /**
   * Its CPU time so far, in milliseconds: user and system time of all its
   * threads (the main one, V8's, libuv's pool), from `/proc/<pid>/stat`, in
   * clock ticks of 10 ms.
   */
  readonly cpuTime = (): number | undefined => {
    try {
      const stat = fs.readFileSync(`/proc/${this.pid}/stat`, "latin1")
      // Fields after the command's name, which may hold spaces and parentheses: utime and stime are the 12th and 13th.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      return (Number(fields[11]) + Number(fields[12])) * 10
    } catch {
      return undefined
    }
  }

  get sharedBytes(): number {
    return this.shared?.sentBytes ?? 0
  }

  /** A frame from the worker, JSON or binary: its messages, read until the worker is killed. */
  private receiveFrame(frame: string | Buffer): void {
    if (this.killed) return
    const invalid = decodeFrame(frame, "worker", this.receive)
    if (invalid !== undefined) this.kill(KillReason.protocol(invalid.reason))
  }

  /** One message from the worker; false once it is killed: what it says after that is ignored. */
  private readonly receive = (message: FromWorkerMessage): boolean => {
    if (handshake(this, message)) {
      // A reply means the worker has read its payload: the payload's region of the shared file is free.
      const kind = message[0]
      if (kind === FromWorker.Exit || kind === FromWorker.BatchExit || kind === FromWorker.BatchValues) {
        this.shared?.release(message[1])
      }
      this.events.onMessage(this, message)
    }
    return !this.killed
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

  /** Ends the worker now: see `markKilled`. */
  kill(reason?: KillReason): void {
    if (!this.markKilled(reason)) return
    if (this.grouped) return killGroup(this.pid)
    try {
      this.child.kill("SIGKILL")
    } catch {
      // already gone
    }
  }
}

/**
 * Starts workers as child processes. Once a worker fails to load its bundle,
 * the workers after it start on the plain path, and the bundle is set aside
 * unless it is whole, so that the next pool builds it again.
 *
 * @internal
 */
export const spawnProcess = (options: SpawnOptions): Spawn =>
  spawnWith(options, (current, events) => new WorkerProcess(current, events))

/** Starts workers with `start`, on the plain path once one failed to load its bundle (see `spawnProcess`). @internal */
export const spawnWith = <Options extends { readonly bundle?: PlanFile | undefined }>(
  options: Options,
  start: (options: Options, events: WorkerEvents) => WorkerConnection
): Spawn => {
  let current = options
  const onClose = (events: WorkerEvents) => (worker: WorkerConnection) => {
    // Once: the workers started with it may all fail.
    if (worker.bundleFailed === true && current.bundle !== undefined) {
      discard(current.bundle)
      current = { ...options, bundle: undefined }
    }
    events.onClose(worker)
  }
  return (events) => start(current, current.bundle === undefined ? events : { ...events, onClose: onClose(events) })
}
