/**
 * The fleet: how many workers run, their start-up and its back-off, proof of
 * life (pings) and hang detection, idle shrink, recycling, replacement after a
 * crash, and shutdown. Each worker that becomes ready joins the dispatcher,
 * which gives it tasks; the supervisor tells the dispatcher when a worker
 * leaves or stops taking work, and never touches a task itself. What a failed
 * start means (its error, the back-off, a broken pool) is in startFailures.ts.
 *
 * @internal
 */
import type { WorkerStartError } from "../../PoolError.ts"
import type { Stats } from "../../ProcessPool.ts"
import { afterReading, type Cancel, type PoolClock } from "../clock.ts"
import type { PoolEvents } from "../telemetry/events.ts"
import { FromWorker, type FromWorkerMessage, Message } from "../wire/protocol.ts"
import type { Dispatcher } from "./dispatcher.ts"
import type { Slot } from "./entry.ts"
import { KillReason, type WorkerExitReason } from "./killReason.ts"
import { afterStartFailure, brokenError, startError } from "./startFailures.ts"
import type { Spawn, WorkerConnection } from "./workerProcess.ts"

/**
 * A worker idle at least this long (ms) gets a ping ahead of its next task.
 * One that answered more recently is left alone: calls made back to back pay no
 * extra message, and an event loop that blocks within this window of its last
 * answer is still caught by the next heartbeat if the worker is idle then.
 */
const pingAheadAfter = 1

/** @internal */
export interface SupervisorOptions {
  /** Workers kept even when idle; the pool is ready once these are. */
  readonly minSize: number
  /** Workers at most, when work is queued. */
  readonly maxSize: number
  /** A worker idle this long is stopped, while more than `minSize` remain. */
  readonly idleTimeout: number
  readonly startTimeout: number
  readonly maxStartFailures: number
  readonly maxTasksPerWorker: number
  /** How often workers are pinged, and idle ones counted. */
  readonly heartbeatInterval: number
  /** A worker that leaves a ping sent while it was idle unanswered this long is hung, and killed. */
  readonly hangTimeout: number
  /** The worker module, for start errors. */
  readonly moduleUrl: string
}

/** One worker, as the supervisor sees it. */
class Member {
  readonly worker: WorkerConnection
  /** Its place in the dispatcher, once it is ready. */
  slot: Slot | undefined = undefined
  /** Recycled or idle-stopped: it finishes what it holds, then is asked to exit. */
  retiring = false
  /** Why the pool ended it on purpose; a worker that ends without one crashed. */
  planned: WorkerExitReason | undefined = undefined
  pingSeq = 0
  /** When the outstanding ping was sent; 0 when none is outstanding. */
  pingSentAt = 0
  /** Whether the outstanding ping was sent while the worker was idle. */
  pingIdle = false
  /** How long the parent had been seen blocked when the ping was sent: see `Supervisor.blocked`. */
  pingBlocked = 0
  /** The start of the incomplete frame the supervisor last saw (`partialSince`). */
  partialSince = 0
  /** How long the parent had been seen blocked when that frame started. */
  partialBlocked = 0
  /**
   * Killed for leaving a ping it got while idle unanswered. It answers a ping
   * before it starts what was sent after it, so it had started none of the
   * tasks it held.
   */
  hungIdle = false
  /** Resident set size in bytes, as of its last answer to a ping. */
  rss = 0
  /** Stops the start-up timer. */
  cancelStart: Cancel = () => {}
  constructor(worker: WorkerConnection) {
    this.worker = worker
  }
}

/**
 * The pools of this process whose workers may still run. One `exit` hook,
 * installed with the first pool, kills their workers should the process exit
 * without closing them: any number of pools, one listener.
 */
const livePools = new Set<Supervisor>()
let exitHookInstalled = false
const installExitHook = (): void => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on("exit", () => {
    for (const pool of livePools) pool.killAll()
  })
}

/** @internal */
export class Supervisor {
  private readonly members = new Map<WorkerConnection, Member>()
  private startFailures = 0
  private respawnTimer: Cancel | undefined = undefined
  private pendingSpawns = 0
  /** Workers are being asked to exit; none is replaced. */
  private stopping = false
  /** Workers that died unexpectedly after they were ready. */
  crashes = 0
  private onAllDead: (() => void) | undefined = undefined
  private startWaiter: ((error: WorkerStartError | undefined) => void) | undefined = undefined
  private readonly heartbeat: Cancel
  private pingSeq = 0
  /** When the heartbeat last ran, on the pool's clock. */
  private lastBeat: number
  /**
   * How long the parent's event loop was seen blocked, in milliseconds, summed:
   * by how much each heartbeat ran late. The parent was not reading the
   * workers' pipes then, so that time never counts as a worker's silence.
   */
  private blocked = 0
  /** Whether a ping goes ahead of the first task after a pause; off when hangs are not watched. */
  private readonly pingAhead: boolean
  /** Whether the pool may grow past `minSize` while work is queued. */
  private readonly elastic: boolean

  readonly options: SupervisorOptions
  private readonly dispatcher: Dispatcher
  private readonly spawn: Spawn
  private readonly clock: PoolClock
  private readonly events: PoolEvents

  constructor(options: SupervisorOptions, dispatcher: Dispatcher, spawn: Spawn, clock: PoolClock, events: PoolEvents) {
    this.options = options
    this.dispatcher = dispatcher
    this.spawn = spawn
    this.clock = clock
    this.events = events
    this.pingAhead = Number.isFinite(options.hangTimeout)
    this.elastic = options.maxSize > options.minSize
    dispatcher.connect({
      grow: (queued, window) => this.grow(queued, window),
      sending: (slot) => this.sending(slot),
      answered: (slot) => this.answered(slot)
    })
    installExitHook()
    livePools.add(this)
    this.lastBeat = clock.now()
    this.heartbeat = clock.every(options.heartbeatInterval, () => this.tick())
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

  /** Workers that count towards the size: ready and taking work, starting, or about to be respawned. */
  private get active(): number {
    let ready = 0
    for (const member of this.members.values()) if (member.worker.state === "ready" && !member.retiring) ready++
    return ready + this.pendingSpawns
  }

  /** Spawns workers, up to `maxSize`, while queued work exceeds what starting workers will take. */
  private grow(queued: number, window: number): void {
    // A fixed-size pool never grows: crashes and recycling replace their own workers.
    if (!this.elastic || this.stopping || this.dispatcher.isBroken) return
    const wanted = Math.ceil(queued / window) - this.pendingSpawns
    for (let i = 0, room = this.options.maxSize - this.active; i < wanted && i < room; i++) this.spawnWorker()
  }

  private spawnWorker(): void {
    this.pendingSpawns++
    const worker = this.spawn({
      onReady: (worker) => this.onReady(worker),
      onMessage: (worker, message) => this.onMessage(worker, message),
      onClose: (worker) => this.onClose(worker)
    })
    const member = new Member(worker)
    this.members.set(worker, member)
    // Judged after the pipes are read: a timer that fires late, because the parent was blocked, finds
    // the Ready that came meanwhile.
    member.cancelStart = this.clock.after(this.options.startTimeout, () =>
      afterReading(() => {
        if (worker.state === "starting") worker.kill(KillReason.startTimeout(this.options.startTimeout))
      }), true)
  }

  private onReady(worker: WorkerConnection): void {
    const member = this.members.get(worker)!
    member.cancelStart()
    this.pendingSpawns--
    this.startFailures = 0
    this.events.workerStarted?.(worker.pid)
    if (this.stopping) {
      member.planned = "shutdown"
      this.startWaiter?.(undefined)
      return worker.shutdown()
    }
    member.slot = this.dispatcher.attach(worker)
    // Last: the pool's builder may resume at once.
    this.startWaiter?.(undefined)
  }

  private onClose(worker: WorkerConnection): void {
    const member = this.members.get(worker)!
    this.members.delete(worker)
    member.cancelStart()
    if (member.slot === undefined && member.planned === undefined) {
      this.pendingSpawns--
      this.events.workerExited?.(worker.pid, "start_failed")
      const error = startError(worker, this.options.moduleUrl)
      if (worker.bundleFailed === true && !this.stopping) {
        // Not the worker module's fault: the next worker takes the plain path (see `spawnProcess`).
        this.spawnWorker()
      } else if (this.startWaiter !== undefined) {
        this.startWaiter(error)
      } else if (!this.stopping) {
        this.startFailures++
        this.scheduleRespawn(error)
      }
    } else {
      // Ended by the pool on purpose, killed by it for a reason, past a limit of the pool's, or else crashed.
      this.events.workerExited?.(
        worker.pid,
        member.planned ?? worker.killReason?.kind ?? (worker.limit !== undefined ? "limit" : "crashed")
      )
      if (member.planned === undefined) {
        this.crashes++
        if (!this.stopping) this.spawnWorker()
      }
      if (member.slot !== undefined) this.dispatcher.detach(member.slot, member.hungIdle)
    }
    if (this.members.size === 0) this.onAllDead?.()
  }

  /** Replaces a worker that failed to start, backing off, or declares the pool broken: see `afterStartFailure`. */
  private scheduleRespawn(error: WorkerStartError): void {
    let live = false
    for (const member of this.members.values()) if (member.worker.state === "ready") live = true
    const next = afterStartFailure({
      failures: this.startFailures,
      maxStartFailures: this.options.maxStartFailures,
      live,
      pending: this.pendingSpawns
    })
    if (next._tag === "Break") return this.dispatcher.break(brokenError(this.startFailures, error))
    this.pendingSpawns++
    this.respawnTimer = this.clock.after(next.delay, () => {
      this.respawnTimer = undefined
      this.pendingSpawns--
      if (!this.stopping) this.spawnWorker()
    })
  }

  // -------------------------------------------------------------------------
  // Proof of life, idle shrink and recycling
  // -------------------------------------------------------------------------

  /**
   * Pings a worker. An `idle` ping is one no task of the worker can delay: it
   * was sent while the worker had nothing in flight, or just ahead of the task
   * that makes it busy, which the worker answers before it starts that task.
   * Only an idle ping left unanswered shows a hang.
   */
  private ping(member: Member, idle: boolean): void {
    member.pingSeq = ++this.pingSeq
    member.pingSentAt = this.clock.now()
    member.pingBlocked = this.blocked
    member.pingIdle = idle
    member.worker.sendMessage(Message.ping(member.pingSeq))
  }

  /** A task is about to go to an idle worker: after a pause, a ping goes first, as proof of life. */
  private sending(slot: Slot): void {
    if (!this.pingAhead) return
    const member = this.members.get(slot.worker)
    if (member === undefined || (member.pingSentAt > 0 && member.pingIdle)) return
    // Back-to-back calls skip it: a worker that answered under `pingAheadAfter` ago was alive then.
    if (this.clock.now() - slot.idleSince >= pingAheadAfter) this.ping(member, true)
  }

  /** A worker answered a task: it may be due for recycling, or done retiring. */
  private answered(slot: Slot): void {
    const member = this.members.get(slot.worker)
    if (member === undefined) return
    if (
      !member.retiring && this.options.maxTasksPerWorker > 0 && slot.tasksDone >= this.options.maxTasksPerWorker
    ) {
      this.retire(member, "recycled")
    }
    if (member.retiring && this.dispatcher.isIdle(slot)) member.worker.shutdown()
  }

  private onMessage(worker: WorkerConnection, message: FromWorkerMessage): void {
    const member = this.members.get(worker)
    if (member === undefined) return
    switch (message[0]) {
      case FromWorker.Pong: {
        if (message[1] === member.pingSeq) member.pingSentAt = 0
        member.rss = message[2]
        return
      }
      case FromWorker.Recycle: {
        // Past its memory ceiling: replaced at once, it finishes what it holds.
        if (!member.retiring && member.slot !== undefined) {
          this.retire(member, "recycled")
          if (this.dispatcher.isIdle(member.slot)) worker.shutdown()
        }
        return
      }
      case FromWorker.Log: {
        const id = message[1]
        const entry = id === 0 || member.slot === undefined ? undefined : this.dispatcher.entryOf(member.slot, id)
        return this.events.log?.(worker.pid, entry, message)
      }
      case FromWorker.Metrics: {
        const broken = this.events.metrics?.(worker.pid, message)
        if (broken !== undefined) worker.kill(KillReason.protocol(broken))
        return
      }
    }
    if (member.slot === undefined) return
    const broken = this.dispatcher.reply(member.slot, message)
    if (broken !== undefined) worker.kill(KillReason.protocol(broken))
  }

  /**
   * Recycles or stops a worker: it gets no new work and exits once its tasks
   * are done, so this never fails a task. A recycled worker's replacement is
   * spawned at once.
   */
  private retire(member: Member, reason: "recycled" | "idle"): void {
    member.retiring = true
    member.planned = reason
    if (member.slot !== undefined) this.dispatcher.retire(member.slot)
    if (reason === "recycled" && !this.stopping) this.spawnWorker()
  }

  /**
   * Runs every `heartbeatInterval`: pings workers, kills those that stopped
   * answering while idle, and stops those idle past `idleTimeout`.
   *
   * A worker's silence is measured only while the parent could listen: a
   * heartbeat that runs late, because a long synchronous call, a GC pause or
   * a debugger held the parent's event loop, runs before the replies that
   * came meanwhile are read, and the time it was held does not count.
   */
  private tick(): void {
    const now = this.clock.now()
    const blockedBefore = this.blocked
    const late = now - this.lastBeat - this.options.heartbeatInterval
    if (late > 0) this.blocked += late
    this.lastBeat = now
    let open = 0
    for (const member of this.members.values()) if (member.worker.state === "ready" && !member.retiring) open++
    for (const member of this.members.values()) {
      const worker = member.worker
      const slot = member.slot
      if (worker.state !== "ready" || slot === undefined) continue
      // The rest of a frame comes within moments of its start; one that does not means the stream is broken.
      const partialSince = worker.partialSince
      if (partialSince > 0) {
        // First seen now: of the time the parent was seen blocked, only this heartbeat's lateness can be since.
        if (partialSince !== member.partialSince) {
          member.partialSince = partialSince
          member.partialBlocked = blockedBefore
        }
        if (this.silence(performance.now(), partialSince, member.partialBlocked) > this.options.hangTimeout) {
          worker.kill(
            KillReason.protocol(`a frame from the worker stayed incomplete for over ${this.options.hangTimeout} ms`)
          )
          continue
        }
      }
      const idle = this.dispatcher.isIdle(slot)
      if (
        idle && !member.retiring && open > this.options.minSize && now - slot.idleSince > this.options.idleTimeout
      ) {
        open--
        this.retire(member, "idle")
        worker.shutdown()
        continue
      }
      if (member.pingSentAt > 0 && member.pingIdle) {
        if (this.silence(now, member.pingSentAt, member.pingBlocked) > this.options.hangTimeout) {
          member.hungIdle = true
          worker.kill(KillReason.hung(this.options.hangTimeout))
        }
        continue
      }
      // A ping sent while the worker was busy is replaced by one sent while it is idle.
      if (member.pingSentAt === 0 || idle) this.ping(member, idle)
    }
  }

  /** Milliseconds from `since` to `now` during which the parent could listen; `blocked` was `blockedThen` at `since`. */
  private silence(now: number, since: number, blockedThen: number): number {
    return now - since - (this.blocked - blockedThen)
  }

  // -------------------------------------------------------------------------
  // Shutdown
  // -------------------------------------------------------------------------

  /**
   * Stops accepting work; in `drain` mode lets queued and running tasks finish
   * within `timeout`, in `interrupt` mode ends them at once with `PoolClosed`;
   * then asks every worker to exit and kills those still alive after `timeout`.
   */
  shutdown(mode: "drain" | "interrupt", timeout: number, done: () => void): void {
    const dispatcher = this.dispatcher
    dispatcher.close()
    this.heartbeat()
    let killTimer: Cancel | undefined
    const finished = () => {
      killTimer?.()
      dispatcher.closedForGood()
      livePools.delete(this)
      done()
    }
    const closeWorkers = () => {
      this.stopping = true
      this.respawnTimer?.()
      dispatcher.closeQueued()
      dispatcher.endSent()
      if (this.members.size === 0) return finished()
      this.onAllDead = finished
      for (const member of this.members.values()) {
        if (member.planned === undefined) member.planned = "shutdown"
        if (member.slot !== undefined && !dispatcher.isIdle(member.slot)) {
          member.worker.kill(KillReason.closedBusy)
        } else member.worker.shutdown()
      }
      killTimer = this.clock.after(timeout, () => {
        for (const member of this.members.values()) {
          member.worker.kill(KillReason.closeTimedOut)
        }
      })
    }
    if (mode === "interrupt") {
      this.stopping = true
      dispatcher.closeQueued()
      dispatcher.interruptSent()
    }
    let drained = false
    let drainTimer: Cancel = () => {}
    let cancelIdle: () => void = () => {}
    const drain = () => {
      if (drained) return
      drained = true
      drainTimer()
      cancelIdle()
      closeWorkers()
    }
    // Judged after the pipes are read: answers that came while the parent was blocked are not lost.
    drainTimer = this.clock.after(timeout, () => afterReading(drain))
    cancelIdle = dispatcher.whenIdle(drain)
  }

  /** Worker processes alive now: starting, ready or stopping. */
  get liveWorkers(): number {
    return this.members.size
  }

  /** Kills every worker at once: the parent process is exiting. */
  killAll(): void {
    for (const member of this.members.values()) member.worker.kill()
  }

  // -------------------------------------------------------------------------
  // Stats
  // -------------------------------------------------------------------------

  /** What the supervisor knows of each worker, with what the dispatcher knows. */
  workerStats(): Array<Stats["workers"][number]> {
    return Array.from(this.members.values(), (member) => {
      const worker = member.worker
      const tasks = member.slot === undefined
        ? { inflight: 0, running: 0, prefetched: 0, busy: false, tasksDone: 0 }
        : this.dispatcher.slotStats(member.slot)
      return {
        pid: worker.pid,
        state: member.retiring && worker.state === "ready" ? "retiring" : worker.state,
        ...tasks,
        rss: member.rss,
        sharedBytes: worker.sharedBytes
      }
    })
  }
}
