/**
 * The pool's state machine, in plain callbacks so that the hot path allocates
 * no fibers: the FIFO queue, least-loaded routing, the in-flight window of each
 * worker, interruption, timeouts, crash accounting, replacement and shutdown.
 *
 * Every entry ends exactly once, through `settle`.
 *
 * @internal
 */
import { PoolClosed, QueueFull, TaskTimeout, WorkerCrashed, WorkerStartError } from "../PoolError.ts"
import type { PoolError } from "../PoolError.ts"
import type { Binary } from "./binary.ts"
import { after, type Cancel, every } from "./clock.ts"
import { ExitKind, FromWorker, isExitKind, ToWorker } from "./protocol.ts"
import { type SpawnOptions, WorkerProcess } from "./supervisor.ts"

/** A reply kind that carries a `PoolError` instead of a worker's answer. @internal */
export const PoolErrorKind = -1

/**
 * Turns a reply into the caller's outcome: `kind` is an `ExitKind`,
 * `BatchReply`, or `PoolErrorKind` with a `PoolError` as `value`.
 *
 * @internal
 */
export type Decode = (kind: number, value: unknown) => unknown

/** The reply kind of a batch's answer: `value` holds every item's `[kind, value]`. @internal */
export const BatchReply = 100

/** The reply kind of a batch whose items all succeeded: `value` holds their encoded values. @internal */
export const BatchValuesReply = 101

/**
 * A worker idle at least this long (ms) gets a ping ahead of its next task.
 * One that answered more recently is left alone: calls made back to back pay no
 * extra message, and an event loop that blocks within this window of its last
 * answer is still caught by the next heartbeat if the worker is idle then.
 */
const pingAheadAfter = 1

const State = {
  Waiting: 0,
  Queued: 1,
  Sent: 2,
  Done: 3
} as const

const isBatchReply = (items: Array<unknown>, size: number): boolean => {
  if (items.length !== size) return false
  for (const item of items) if (!Array.isArray(item) || !isExitKind(item[0])) return false
  return true
}

/** @internal */
export class Entry {
  state: number = State.Waiting
  worker: WorkerProcess | undefined = undefined
  started = false
  interruptRequested = false
  timedOut = false
  /** Ended by a shutdown in `interrupt` mode. */
  closed = false
  /** Cancels the timeout, while one runs. */
  timer: Cancel | undefined = undefined
  /** When it was sent, in `performance.now()` milliseconds. */
  sentAt = 0
  /** Called once the entry has ended: an interrupted caller waits for the stop. */
  doneCallbacks: Array<() => void> | undefined = undefined
  /** A streaming task's items, as they arrive (still encoded); its end comes through `resume`. */
  onItems: ((values: Array<unknown>) => void) | undefined = undefined
  /** A batch's results that went ahead of its reply, part by part (still encoded): see `BatchPart`. */
  onPart: ((exits: boolean, items: Array<unknown>) => void) | undefined = undefined
  /** Items of a batch whose results came in parts so far. */
  received = 0
  /** Items of a batch the worker may run before its next part: the ones whose fate a crash leaves unknown. */
  window = 0

  readonly id: number
  readonly tag: string
  /** The encoded Run or RunBatch message. */
  readonly message: string | Binary
  /** Milliseconds from start to TaskTimeout; 0 for none. */
  readonly timeout: number
  /** Shared by every entry of a task: no closure is allocated per entry. */
  readonly decode: Decode
  /** Resumes the caller with the decoded outcome. */
  readonly resume: (outcome: any) => void
  /** Items in a batch; 0 for a single task. */
  readonly batchSize: number

  constructor(
    id: number,
    tag: string,
    message: string | Binary,
    timeout: number,
    decode: Decode,
    resume: (outcome: any) => void,
    batchSize: number
  ) {
    this.id = id
    this.tag = tag
    this.message = message
    this.timeout = timeout
    this.decode = decode
    this.resume = resume
    this.batchSize = batchSize
  }

  settle(kind: number, value: unknown): void {
    this.resume(this.decode(kind, value))
  }
}

/**
 * The pools of this process whose workers may still run. One `exit` hook,
 * installed with the first pool, kills their workers should the process exit
 * without closing them: any number of pools, one listener.
 */
const livePools = new Set<{ killAll(): void }>()
let exitHookInstalled = false
const installExitHook = (): void => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on("exit", () => {
    for (const pool of livePools) pool.killAll()
  })
}

/** The entry `id` among those sent to a worker: almost always the first, as replies come nearly in order. */
const sentEntry = (worker: WorkerProcess, id: unknown): Entry | undefined => {
  const inflight = worker.inflight as Array<Entry>
  for (let i = 0; i < inflight.length; i++) if (inflight[i].id === id) return inflight[i]
  return undefined
}

/** @internal */
export interface DispatcherOptions {
  /** Workers kept even when idle; the layer waits for these to be ready. */
  readonly minSize: number
  /** Workers at most, when work is queued. */
  readonly maxSize: number
  /** A worker idle this long is stopped, while more than `minSize` remain. */
  readonly idleTimeout: number
  readonly spawn: SpawnOptions
  readonly concurrency: number
  /** Tasks sent ahead to a worker beyond its concurrency; "auto" adapts to the measured task time. */
  readonly prefetch: number | "auto"
  readonly maxQueue: number
  readonly queuePolicy: "wait" | "reject"
  readonly interruptGrace: number
  readonly startTimeout: number
  readonly maxStartFailures: number
  readonly maxTasksPerWorker: number
  /** How often idle workers are pinged, and idle ones counted. */
  readonly heartbeatInterval: number
  /** A worker that leaves a ping sent while it was idle unanswered this long is hung, and killed. */
  readonly hangTimeout: number
}

/** @internal */
export interface WorkerStats {
  readonly pid: number
  readonly state: string
  readonly inflight: number
  readonly running: number
  readonly prefetched: number
  readonly busy: boolean
  readonly tasksDone: number
  readonly rss: number
  readonly sharedBytes: number
}

/** @internal */
export class Dispatcher {
  private readonly workers = new Set<WorkerProcess>()
  /** Entries sent to a worker and not yet answered. */
  private inflightCount = 0
  private queue: Array<Entry | undefined> = []
  private head = 0
  private queued = 0
  private waiting: Array<Entry> = []
  private waitingHead = 0
  /** Live entries in `waiting`: cancelled ones stay in the array until they are passed over. */
  private waitingCount = 0
  private nextId = 0
  private startFailures = 0
  private respawnTimer: Cancel | undefined = undefined
  private pendingSpawns = 0
  /** No new work is accepted. */
  closing = false
  /** Workers are being asked to exit; none is replaced. */
  private stopping = false
  broken: WorkerStartError | undefined = undefined
  /** Workers that died unexpectedly after they were ready. */
  crashes = 0
  /** Most tasks in flight on one worker: its concurrency plus the tasks sent ahead. */
  private window: number
  /** Smoothed time a worker spends on one task, in milliseconds; NaN until measured. */
  private serviceTime = Number.NaN
  /** Called once nothing is queued or in flight, while draining. */
  private onIdle: (() => void) | undefined = undefined
  private onAllDead: (() => void) | undefined = undefined
  private startWaiter: ((error: WorkerStartError | undefined) => void) | undefined = undefined
  /** The pool has stopped: its workers are gone. */
  private closed = false
  private readonly heartbeat: Cancel
  private pingSeq = 0
  /** Whether a ping goes ahead of the first task after a pause; off when hangs are not watched. */
  private readonly pingAhead: boolean
  /** Whether the pool may grow past `minSize` while work is queued. */
  private readonly elastic: boolean

  readonly options: DispatcherOptions

  constructor(options: DispatcherOptions) {
    this.options = options
    this.window = options.concurrency + (options.prefetch === "auto" ? 1 : options.prefetch)
    installExitHook()
    livePools.add(this)
    this.pingAhead = Number.isFinite(options.hangTimeout)
    this.elastic = options.maxSize > options.minSize
    this.heartbeat = every(options.heartbeatInterval, () => this.tick())
  }

  id(): number {
    return ++this.nextId
  }

  // -------------------------------------------------------------------------
  // Start-up and replacement
  // -------------------------------------------------------------------------

  /** Spawns the `minSize` initial workers; `done` gets the first start error, if any. */
  start(done: (error: WorkerStartError | undefined) => void): void {
    if (this.options.minSize === 0) return done(undefined)
    let ready = 0
    let finished = false
    this.startWaiter = (error) => {
      if (finished) return
      if (error !== undefined || ++ready === this.options.minSize) {
        finished = true
        this.startWaiter = undefined
        done(error)
      }
    }
    for (let i = 0; i < this.options.minSize; i++) this.spawnWorker()
  }

  /** Workers that count towards the size: ready, starting, or about to be respawned. */
  private get active(): number {
    let ready = 0
    for (const worker of this.workers) if (worker.state === "ready") ready++
    return ready + this.pendingSpawns
  }

  /**
   * Pings a worker. An `idle` ping is one no task of the worker can delay: it
   * was sent while the worker had nothing in flight, or just ahead of the task
   * that makes it busy, which the worker answers before it starts that task.
   * Only an idle ping left unanswered shows a hang.
   */
  private ping(worker: WorkerProcess, idle: boolean): void {
    worker.pingSeq = ++this.pingSeq
    worker.pingSentAt = performance.now()
    worker.pingIdle = idle
    worker.send(JSON.stringify([ToWorker.Ping, worker.pingSeq]))
  }

  /** Spawns workers, up to `maxSize`, while queued work exceeds what starting workers will take. */
  private grow(): void {
    if (this.stopping || this.broken !== undefined) return
    const wanted = Math.ceil(this.queued / this.window) - this.pendingSpawns
    for (let i = 0, room = this.options.maxSize - this.active; i < wanted && i < room; i++) this.spawnWorker()
  }

  /**
   * Runs every `heartbeatInterval`: pings workers, kills those that stopped
   * answering while idle, and stops those idle past `idleTimeout`.
   */
  private tick(): void {
    const now = performance.now()
    let ready = 0
    for (const worker of this.workers) if (worker.state === "ready") ready++
    for (const worker of this.workers) {
      if (worker.state !== "ready" && worker.state !== "retiring") continue
      // The rest of a frame comes within moments of its start; one that does not means the stream is broken.
      if (worker.reader.partialSince > 0 && now - worker.reader.partialSince > this.options.hangTimeout) {
        worker.kill(`protocol error: a frame from the worker stayed incomplete for over ${this.options.hangTimeout} ms`)
        continue
      }
      if (worker.pingSentAt > 0 && worker.pingIdle) {
        if (now - worker.pingSentAt > this.options.hangTimeout) {
          worker.kill(
            `it stopped answering: its event loop was blocked for over ${this.options.hangTimeout} ms while it was idle`
          )
        }
        continue
      }
      const idle = worker.inflight.length === 0
      // A ping sent while the worker was busy is replaced by one sent while it is idle.
      if (worker.pingSentAt === 0 || idle) this.ping(worker, idle)
      if (
        idle && worker.state === "ready" && ready > this.options.minSize &&
        now - worker.idleSince > this.options.idleTimeout
      ) {
        ready--
        worker.state = "retiring"
        worker.planned = true
        worker.shutdown()
      }
    }
  }

  private spawnWorker(): void {
    this.pendingSpawns++
    const worker = new WorkerProcess(this.options.spawn, {
      onReady: (worker) => this.onReady(worker),
      onMessage: (worker, message) => this.onMessage(worker, message),
      onClose: (worker) => this.onClose(worker)
    })
    this.workers.add(worker)
    const cancel = after(this.options.startTimeout, () => {
      if (worker.state === "starting") {
        worker.kill(`it did not become ready within ${this.options.startTimeout} ms`)
      }
    }, true)
    worker.child.once("close", cancel)
  }

  private onReady(worker: WorkerProcess): void {
    this.pendingSpawns--
    this.startFailures = 0
    worker.idleSince = performance.now()
    this.startWaiter?.(undefined)
    if (this.stopping) return worker.shutdown()
    this.fill(worker)
  }

  private startError(worker: WorkerProcess): WorkerStartError {
    const how = worker.killReason ?? (worker.signal !== null
      ? `it was killed by ${worker.signal}`
      : `it exited with code ${worker.exitCode}`)
    const module = this.options.spawn.moduleUrl
    // The worker's own words come first when it gave them: the user's error, not the pool's internals.
    return new WorkerStartError({
      message: worker.startFailure !== undefined
        ? `${worker.startFailure}\n(Worker process ${worker.pid} of ${module} could not start: ${how}. ` +
          `Its stderr is in this error's \`stderr\`.)`
        : `Worker process ${worker.pid} failed to start: ${how}. ` +
          `Its stderr is attached; the worker module (${module}) must import cleanly ` +
          `and export Worker.handlers(...) as default.`,
      stderr: worker.stderr
    })
  }

  private onClose(worker: WorkerProcess): void {
    this.workers.delete(worker)
    if (!worker.everReady) {
      this.pendingSpawns--
      const error = this.startError(worker)
      if (this.startWaiter !== undefined) {
        this.startWaiter(error)
      } else if (!this.stopping) {
        this.startFailures++
        this.scheduleRespawn(error)
      }
    } else {
      if (!worker.planned) this.crashes++
      if (!this.stopping && !worker.planned) this.spawnWorker()
      this.failInflight(worker)
    }
    this.checkIdle()
    if (this.workers.size === 0) this.onAllDead?.()
  }

  /** Replaces a worker that failed to start, backing off, or declares the pool broken. */
  private scheduleRespawn(error: WorkerStartError): void {
    const live = Array.from(this.workers).some((w) => w.state === "ready")
    if (this.startFailures >= this.options.maxStartFailures && !live && this.pendingSpawns === 0) {
      this.broken = new WorkerStartError({
        message: `The pool is broken: workers failed to start ${this.startFailures} times in a row. ` +
          error.message,
        stderr: error.stderr
      })
      const broken = this.broken
      this.failQueued(() => broken)
      return
    }
    const delay = Math.min(100 * 2 ** (this.startFailures - 1), 5_000)
    this.pendingSpawns++
    this.respawnTimer = after(delay, () => {
      this.respawnTimer = undefined
      this.pendingSpawns--
      if (!this.stopping) this.spawnWorker()
    })
  }

  /** Fails or requeues the tasks of a worker that died. */
  private failInflight(worker: WorkerProcess): void {
    const inflight = worker.inflight as Array<Entry>
    const requeue: Array<Entry> = []
    this.inflightCount -= inflight.length
    for (const entry of inflight) {
      entry.worker = undefined
      if (entry.started || entry.interruptRequested || entry.timedOut || entry.closed) {
        this.finish(
          entry,
          PoolErrorKind,
          new WorkerCrashed({
            pid: worker.pid,
            exitCode: worker.exitCode,
            signal: worker.signal,
            task: entry.tag,
            ...(worker.killReason !== undefined ? { reason: worker.killReason } : {})
          })
        )
      } else {
        entry.state = State.Queued
        requeue.push(entry)
      }
    }
    inflight.length = 0
    // Tasks sent ahead but not started go back to the front of the queue, in order.
    for (let i = requeue.length - 1; i >= 0; i--) this.unshift(requeue[i])
    this.dispatch()
  }

  // -------------------------------------------------------------------------
  // Submission and routing
  // -------------------------------------------------------------------------

  /** Accepts an entry: sends it at once when a worker has room, else queues it. */
  submit(entry: Entry): void {
    if (this.broken !== undefined) return this.finish(entry, PoolErrorKind, this.broken)
    if (this.closing) return this.finish(entry, PoolErrorKind, this.poolClosed(entry))
    if (this.queued === 0) {
      const worker = this.leastLoaded()
      if (worker !== undefined) return this.send(worker, entry)
    }
    if (this.queued < this.options.maxQueue) {
      entry.state = State.Queued
      this.queued++
      this.queue.push(entry)
      // A fixed-size pool never grows: crashes and recycling replace their own workers.
      if (this.elastic) this.grow()
    } else if (this.options.queuePolicy === "reject") {
      this.finish(entry, PoolErrorKind, new QueueFull({ task: entry.tag, maxQueue: this.options.maxQueue }))
    } else {
      entry.state = State.Waiting
      this.waitingCount++
      this.waiting.push(entry)
    }
  }

  /** Whether a worker may take one more task: ready, window not full, recycling budget not spent. */
  private hasRoom(worker: WorkerProcess): boolean {
    return worker.state === "ready" && worker.inflight.length < this.window &&
      (this.options.maxTasksPerWorker === 0 ||
        worker.tasksDone + worker.inflight.length < this.options.maxTasksPerWorker)
  }

  private leastLoaded(): WorkerProcess | undefined {
    let best: WorkerProcess | undefined
    for (const worker of this.workers) {
      if (!this.hasRoom(worker)) continue
      if (best === undefined || worker.inflight.length < best.inflight.length) best = worker
    }
    return best
  }

  private send(worker: WorkerProcess, entry: Entry): void {
    entry.state = State.Sent
    entry.worker = worker
    entry.sentAt = performance.now()
    // Proof of life ahead of the first task after a pause: see `ping`. Back-to-back
    // calls skip it: a worker that answered under `pingAheadAfter` ago was alive then.
    if (
      this.pingAhead && worker.inflight.length === 0 && entry.sentAt - worker.idleSince >= pingAheadAfter &&
      !(worker.pingSentAt > 0 && worker.pingIdle)
    ) {
      this.ping(worker, true)
    }
    worker.idleSince = 0
    worker.inflight.push(entry)
    this.inflightCount++
    worker.send(entry.message, entry.id)
    if (worker.inflight.length <= this.options.concurrency) this.markStarted(entry)
  }

  /** The worker runs its tasks in order, `concurrency` at a time: the first ones in flight are running. */
  private markStarted(entry: Entry): void {
    if (entry.started) return
    entry.started = true
    if (entry.timeout > 0) {
      entry.timer = after(entry.timeout, () => {
        entry.timer = undefined
        entry.timedOut = true
        this.stop(entry)
      })
    }
  }

  private shift(): Entry | undefined {
    while (this.head < this.queue.length) {
      const entry = this.queue[this.head]
      this.queue[this.head++] = undefined
      if (entry !== undefined && entry.state === State.Queued) {
        this.queued--
        this.admitWaiting()
        if (this.head > 1024 && this.head * 2 > this.queue.length) {
          this.queue = this.queue.slice(this.head)
          this.head = 0
        }
        return entry
      }
    }
    return undefined
  }

  private unshift(entry: Entry): void {
    this.queued++
    if (this.head > 0) this.queue[--this.head] = entry
    else this.queue.unshift(entry)
  }

  private admitWaiting(): void {
    while (this.waitingHead < this.waiting.length && this.queued < this.options.maxQueue) {
      const entry = this.waiting[this.waitingHead++]
      if (entry.state !== State.Waiting) continue
      this.waitingCount--
      entry.state = State.Queued
      this.queued++
      this.queue.push(entry)
    }
    if (this.waitingHead === this.waiting.length) {
      this.waiting = []
      this.waitingHead = 0
    }
  }

  /** Sends queued entries to every worker with room. */
  private dispatch(): void {
    while (this.queued > 0) {
      const worker = this.leastLoaded()
      if (worker === undefined) return
      this.send(worker, this.shift()!)
    }
  }

  /** Sends queued entries to one worker that has just made room. */
  private fill(worker: WorkerProcess): void {
    while (this.queued > 0 && this.hasRoom(worker)) {
      this.send(worker, this.shift()!)
    }
  }

  /**
   * Tops up the workers that are down to half their prefetch. Refilling on
   * every reply would send one task per write and per read on both sides; with
   * this low-water mark, tiny tasks travel by the hundred, and a worker still
   * holds half its prefetch, enough to hide the round trip, when the refill
   * is sent.
   */
  private refill(): void {
    const lowWater = this.window - ((this.window - this.options.concurrency + 1) >> 1)
    for (const worker of this.workers) {
      if (this.queued === 0) return
      if (worker.inflight.length <= lowWater) this.fill(worker)
    }
  }

  // -------------------------------------------------------------------------
  // Replies
  // -------------------------------------------------------------------------

  private onMessage(worker: WorkerProcess, message: Array<any>): void {
    const kind = message[0]
    if (kind === FromWorker.Pong) {
      if (message[1] === worker.pingSeq) worker.pingSentAt = 0
      worker.rss = message[2]
      return
    }
    if (kind === FromWorker.Recycle) {
      if (worker.state === "ready") {
        this.retire(worker)
        if (worker.inflight.length === 0) worker.shutdown()
      }
      return
    }
    if (kind === FromWorker.Items) return this.onItems(worker, message)
    if (kind === FromWorker.BatchPart) return this.onPart(worker, message)
    if (
      kind === FromWorker.Exit
        ? !isExitKind(message[2])
        : (kind !== FromWorker.BatchExit && kind !== FromWorker.BatchValues) || !Array.isArray(message[2])
    ) {
      return worker.kill(
        `protocol error: an unexpected message from the worker: ${JSON.stringify(message).slice(0, 200)}`
      )
    }
    // Replies come nearly in the order tasks were sent: the entry is almost always first.
    const inflight = worker.inflight as Array<Entry>
    const id = message[1]
    let index = 0
    while (index < inflight.length && inflight[index].id !== id) index++
    if (index === inflight.length) return
    const entry = inflight[index]
    if (
      (kind === FromWorker.BatchExit && !isBatchReply(message[2], entry.batchSize - entry.received)) ||
      (kind === FromWorker.BatchValues && message[2].length !== entry.batchSize - entry.received)
    ) {
      return worker.kill(`protocol error: a malformed answer to batch ${id} from the worker`)
    }
    if (index === 0) inflight.shift()
    else inflight.splice(index, 1)
    this.inflightCount--
    entry.worker = undefined
    worker.tasksDone++
    this.measure(worker, entry)
    const running = Math.min(this.options.concurrency, inflight.length)
    for (let i = 0; i < running; i++) this.markStarted(inflight[i] as Entry)
    if (
      worker.state === "ready" && this.options.maxTasksPerWorker > 0 &&
      worker.tasksDone >= this.options.maxTasksPerWorker
    ) {
      this.retire(worker)
    }
    if (inflight.length === 0) worker.idleSince = performance.now()
    // The caller resumes inside `finish` and may submit again at once: the worker's state is settled first.
    if (kind === FromWorker.BatchExit) this.finish(entry, BatchReply, message[2])
    else if (kind === FromWorker.BatchValues) this.finish(entry, BatchValuesReply, message[2])
    else this.finish(entry, message[2], message[3])
    if (worker.state === "retiring" && inflight.length === 0) worker.shutdown()
    if (this.queued > 0) this.refill()
    this.checkIdle()
  }

  /** The next items of a streaming task: handed to its caller, who acknowledges them as they are taken. */
  private onItems(worker: WorkerProcess, message: Array<any>): void {
    const entry = sentEntry(worker, message[1])
    // Items of an entry the parent no longer holds (it was interrupted meanwhile) are dropped.
    if (entry === undefined) return
    if (entry.onItems === undefined || !Array.isArray(message[2])) {
      return worker.kill(`protocol error: unexpected items for task ${entry.id} from the worker`)
    }
    // Items mean the stream runs: its timeout counts from now, and a crash now fails it.
    this.markStarted(entry)
    entry.onItems(message[2])
  }

  /**
   * Results of a batch that went ahead of its reply. They count from where
   * the last part ended; what the reply holds then starts after them.
   */
  private onPart(worker: WorkerProcess, message: Array<any>): void {
    const entry = sentEntry(worker, message[1])
    if (entry === undefined) return
    const id = entry.id
    const items = message[3]
    const exits = message[2] === 1
    if (
      entry.onPart === undefined || !Array.isArray(items) || (message[2] !== 0 && !exits) ||
      items.length === 0 || entry.received + items.length >= entry.batchSize ||
      (exits && !isBatchReply(items, items.length))
    ) {
      return worker.kill(`protocol error: a malformed part of batch ${id} from the worker`)
    }
    this.markStarted(entry)
    entry.received += items.length
    entry.window = typeof message[4] === "number" && message[4] >= 1 ? message[4] : entry.batchSize
    entry.onPart(exits, items)
  }

  /** Lets a streaming task's worker produce `n` more items: the caller took that many. */
  ack(entry: Entry, n: number): void {
    if (entry.state === State.Sent && entry.worker !== undefined) {
      entry.worker.send(JSON.stringify([ToWorker.Ack, entry.id, n]))
    }
  }

  /**
   * Learns how long a task takes, and sizes the window from it: tiny tasks are
   * sent far ahead, so the round trip is hidden; longer ones one ahead, so the
   * next payload crosses the pipe while the current task runs, and at most one
   * task waits behind a busy worker while another is idle.
   */
  private measure(worker: WorkerProcess, entry: Entry): void {
    const now = performance.now()
    const sample = (now - Math.max(entry.sentAt, worker.lastReplyAt)) * this.options.concurrency
    worker.lastReplyAt = now
    this.serviceTime = Number.isNaN(this.serviceTime) ? sample : this.serviceTime * 0.9 + sample * 0.1
    if (this.options.prefetch !== "auto") return
    const prefetch = Math.min(256, Math.max(1, Math.ceil(0.5 / this.serviceTime)))
    this.window = this.options.concurrency + prefetch
  }

  /**
   * Recycles a worker: it gets no new work and exits once its tasks are done,
   * so recycling never fails a task. Its replacement is spawned at once.
   */
  private retire(worker: WorkerProcess): void {
    worker.state = "retiring"
    worker.planned = true
    if (!this.stopping) this.spawnWorker()
  }

  /** Ends an entry exactly once. */
  private finish(entry: Entry, kind: number, value: unknown): void {
    if (entry.state === State.Done) return
    entry.state = State.Done
    if (entry.timer !== undefined) entry.timer()
    if (entry.timedOut) {
      entry.settle(PoolErrorKind, new TaskTimeout({ task: entry.tag, timeout: entry.timeout }))
    } else if (entry.closed) {
      entry.settle(PoolErrorKind, this.poolClosed(entry))
    } else if (entry.interruptRequested && kind !== PoolErrorKind) {
      entry.settle(ExitKind.Interrupted, undefined)
    } else {
      entry.settle(kind, value)
    }
    const callbacks = entry.doneCallbacks
    if (callbacks !== undefined) {
      entry.doneCallbacks = undefined
      for (const callback of callbacks) callback()
    }
  }

  /** Calls `callback` once the entry has ended: now, if it has. */
  whenDone(entry: Entry, callback: () => void): void {
    if (entry.state === State.Done) return callback()
    ;(entry.doneCallbacks ??= []).push(callback)
  }

  // -------------------------------------------------------------------------
  // Interruption
  // -------------------------------------------------------------------------

  /**
   * Cancels an entry whose caller was interrupted: a queued entry is dropped at
   * once, a sent one is stopped in its worker. Use {@link whenDone} to wait
   * for the stop.
   */
  cancel(entry: Entry): void {
    switch (entry.state) {
      case State.Waiting:
      case State.Queued: {
        if (entry.state === State.Queued) {
          this.queued--
          this.admitWaiting()
        } else {
          this.waitingCount--
        }
        entry.state = State.Done
        return this.checkIdle()
      }
      case State.Sent: {
        entry.interruptRequested = true
        return this.stop(entry)
      }
    }
  }

  /** Asks the worker to interrupt a sent entry, and kills it if it has not stopped within the grace. */
  private stop(entry: Entry): void {
    const worker = entry.worker
    if (worker === undefined) return
    worker.send(JSON.stringify([ToWorker.Interrupt, entry.id]))
    const grace = after(this.options.interruptGrace, () => {
      if (entry.state !== State.Done && entry.worker === worker) {
        worker.kill(`task "${entry.tag}" did not stop within ${this.options.interruptGrace} ms of being interrupted`)
      }
    })
    this.whenDone(entry, grace)
  }

  // -------------------------------------------------------------------------
  // Shutdown
  // -------------------------------------------------------------------------

  private get pending(): number {
    return this.queued + this.inflightCount + this.waitingCount
  }

  private checkIdle(): void {
    if (this.onIdle !== undefined && this.pending === 0) {
      const onIdle = this.onIdle
      this.onIdle = undefined
      onIdle()
    }
  }

  private failQueued(error: (entry: Entry) => PoolError): void {
    for (let i = this.waitingHead; i < this.waiting.length; i++) {
      const entry = this.waiting[i]
      if (entry.state === State.Waiting) this.finish(entry, PoolErrorKind, error(entry))
    }
    this.waiting = []
    this.waitingHead = 0
    this.waitingCount = 0
    for (let entry = this.shift(); entry !== undefined; entry = this.shift()) {
      this.finish(entry, PoolErrorKind, error(entry))
    }
  }

  /**
   * Stops accepting work; in `drain` mode lets queued and running tasks finish
   * within `timeout`, in `interrupt` mode ends them at once with `PoolClosed`;
   * then asks every worker to exit and kills those still alive after `timeout`.
   */
  shutdown(mode: "drain" | "interrupt", timeout: number, done: () => void): void {
    this.closing = true
    this.heartbeat()
    const closed = (entry: Entry) => this.poolClosed(entry)
    let killTimer: Cancel | undefined
    const finished = () => {
      killTimer?.()
      this.closed = true
      livePools.delete(this)
      done()
    }
    const closeWorkers = () => {
      this.stopping = true
      this.respawnTimer?.()
      this.failQueued(closed)
      for (const entry of this.sentEntries()) {
        entry.closed = true
        this.finish(entry, PoolErrorKind, undefined)
      }
      if (this.workers.size === 0) return finished()
      this.onAllDead = finished
      for (const worker of this.workers) {
        if (worker.inflight.length > 0) worker.kill("the pool closed before its tasks finished")
        else worker.shutdown()
      }
      killTimer = after(timeout, () => {
        for (const worker of this.workers) worker.kill("the pool was closing and the worker did not exit in time")
      })
    }
    if (mode === "interrupt") {
      this.stopping = true
      this.failQueued(closed)
      for (const entry of this.sentEntries()) {
        entry.closed = true
        this.stop(entry)
      }
    }
    if (this.pending === 0) return closeWorkers()
    const drainTimer = after(timeout, () => {
      this.onIdle = undefined
      closeWorkers()
    })
    this.onIdle = () => {
      drainTimer()
      closeWorkers()
    }
  }

  /** The `PoolClosed` of an entry refused or ended by the pool's closing, saying how far the closing has gone. */
  private poolClosed(entry: Entry): PoolClosed {
    return new PoolClosed({ task: entry.tag, state: this.closed ? "closed" : "closing" })
  }

  /** Kills every worker at once: the parent process is exiting. */
  killAll(): void {
    for (const worker of this.workers) worker.kill()
  }

  private sentEntries(): Array<Entry> {
    const entries: Array<Entry> = []
    for (const worker of this.workers) entries.push(...(worker.inflight as Array<Entry>))
    return entries
  }

  stats(): {
    readonly state: "open" | "closing" | "closed"
    readonly queued: number
    readonly inflight: number
    readonly running: number
    readonly workers: ReadonlyArray<WorkerStats>
  } {
    let running = 0
    const workers = Array.from(this.workers, (w): WorkerStats => {
      let started = 0
      for (const entry of w.inflight as Array<Entry>) if (entry.started) started++
      running += started
      return {
        pid: w.pid,
        state: w.state,
        inflight: w.inflight.length,
        running: started,
        prefetched: w.inflight.length - started,
        busy: started > 0,
        tasksDone: w.tasksDone,
        rss: w.rss,
        sharedBytes: w.shared?.sentBytes ?? 0
      }
    })
    return {
      state: this.closed ? "closed" : this.closing ? "closing" : "open",
      queued: this.queued + this.waitingCount,
      inflight: this.inflightCount,
      running,
      workers
    }
  }
}
