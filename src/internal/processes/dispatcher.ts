/**
 * The tasks' side of the pool, in plain callbacks so that the hot path
 * allocates no fibers: sending entries to workers, the in-flight window of
 * each worker, replies, interruption, timeouts, and what becomes of a dead
 * worker's tasks. It asks the queue (`queue.ts`: the FIFO with its bound and
 * the submitters waiting for room) for the next entry, and routing
 * (`routing.ts`: least loaded) for the worker it goes to. The workers
 * themselves (how many, their start-up, pings, recycling, shutdown) belong to
 * the supervisor, which tells the dispatcher when a worker joins, leaves or
 * stops taking work.
 *
 * Every entry ends exactly once, through `finish`, or through `cancel` while
 * no worker holds it.
 *
 * @internal
 */
import type { PoolError } from "../../PoolError.ts"
import { LimitExceeded, PoolClosed, QueueFull, TaskTimeout, WorkerCrashed } from "../../PoolError.ts"
import { afterReading, type Cancel, type PoolClock } from "../clock.ts"
import type { PoolEvents } from "../telemetry/events.ts"
import { Binary } from "../wire/binary.ts"
import { ExitKind, FromWorker, type FromWorkerMessage, Message } from "../wire/protocol.ts"
import { type Entry, EntryState, isPoolErrorReply, type Reply, Slot } from "./entry.ts"
import { KillReason } from "./killReason.ts"
import { Offered, TaskQueue } from "./queue.ts"
import { hasRoom, leastLoaded } from "./routing.ts"
import type { WorkerConnection } from "./workerProcess.ts"

/** Why a task sent ahead to a thread that died is not sent again: its bytes went with the thread. */
const movedReason = "its payload's byte arrays were moved to that thread (the task transfers them), so it could " +
  "not be sent to another"

/** The reply of a task the worker stopped at the caller's request. */
const interrupted: Reply = Message.exit(0, ExitKind.Interrupted) as Reply

/** What the dispatcher asks of the fleet. @internal */
export interface Fleet {
  /** Work is queued beyond what the workers take: `queued` tasks, `window` per worker. */
  readonly grow: (queued: number, window: number) => void
  /** A task is about to go to an idle worker. */
  readonly sending: (slot: Slot) => void
  /** A worker answered a task. */
  readonly answered: (slot: Slot) => void
}

/** What a dispatcher is told of the pool's options. @internal */
export interface DispatcherOptions {
  /** How many tasks one worker runs at once: `workerConcurrency`. */
  readonly workerConcurrency: number
  /** Tasks sent ahead to a worker beyond its concurrency; "auto" adapts to the measured task time. */
  readonly prefetch: number | "auto"
  readonly maxQueue: number
  readonly queuePolicy: "wait" | "reject"
  readonly interruptGrace: number
  /** The CPU time a task may use, in milliseconds (`maxCpuTime`); 0 for no limit. */
  readonly maxCpuTime: number
  /** Recycle a worker after this many tasks; 0 for never. */
  readonly maxTasksPerWorker: number
}

/** The dispatcher of one pool: every entry goes through it. @internal */
export class Dispatcher {
  private readonly slots = new Set<Slot>()
  /** Entries sent to a worker and not yet answered. */
  private inflightCount = 0
  /** Entries no worker has taken yet: the queue, and the submitters waiting for room in it. */
  private readonly queue: TaskQueue
  private nextId = 0
  /** No new work is accepted: the pool is closing (`PoolClosed` says "closing"). */
  private closing = false
  /** The pool has closed: its workers are gone (`PoolClosed` says "closed"). */
  private closed = false
  /** Every new or queued entry fails with this: the workers cannot start. */
  private broken: PoolError | undefined = undefined
  /** Most tasks in flight on one worker: its concurrency plus the tasks sent ahead. */
  private window: number
  /** Smoothed time a worker spends on one task, in milliseconds; NaN until measured. */
  private serviceTime = Number.NaN
  /** Called once nothing is queued or in flight, while draining. */
  private onIdle: (() => void) | undefined = undefined
  private fleet: Fleet | undefined = undefined

  readonly options: DispatcherOptions
  private readonly clock: PoolClock
  private readonly events: PoolEvents
  /** Whether entries keep their times: only for an observer of `settled`. */
  private readonly timed: boolean
  /** How long workers that left held work: see {@link busyTime}. */
  private busyOfGone = 0

  constructor(options: DispatcherOptions, clock: PoolClock, events: PoolEvents) {
    this.options = options
    this.clock = clock
    this.events = events
    this.timed = events.settled !== undefined
    this.queue = new TaskQueue(options.maxQueue, options.queuePolicy)
    this.window = options.workerConcurrency + (options.prefetch === "auto" ? 1 : options.prefetch)
  }

  /** The time at the first call in this turn of the event loop: one clock read for a burst of submits. */
  private turnNow(): number {
    if (this.turnTime < 0) {
      this.turnTime = this.clock.now()
      queueMicrotask(this.endTurn)
    }
    return this.turnTime
  }
  private turnTime = -1
  private readonly endTurn = () => {
    this.turnTime = -1
  }

  /** Joins the fleet that feeds this dispatcher with workers. */
  connect(fleet: Fleet): void {
    this.fleet = fleet
  }

  /** A new entry's id: unique in this pool. */
  id(): number {
    return ++this.nextId
  }

  // -------------------------------------------------------------------------
  // Workers joining and leaving
  // -------------------------------------------------------------------------

  /** A worker is ready: it takes work from now on. */
  attach(worker: WorkerConnection): Slot {
    const slot = new Slot(worker, this.clock.now())
    this.slots.add(slot)
    this.fill(slot)
    return slot
  }

  /** A worker takes no new work (it is recycled or stopped); what it holds goes on. */
  retire(slot: Slot): void {
    slot.open = false
  }

  /**
   * A worker died: the tasks it was running fail with `WorkerCrashed`; tasks
   * sent ahead to it that had not started go back to the front of the queue.
   * One found hung while idle (`startedNone`) had started none, whatever its
   * first tasks were counted as: they all go back.
   */
  detach(slot: Slot, startedNone = false): void {
    this.slots.delete(slot)
    this.busyOfGone += slotBusy(slot, this.clock.now())
    const worker = slot.worker
    const inflight = slot.inflight
    const requeue: Array<Entry> = []
    this.inflightCount -= inflight.length
    slot.streams = 0
    for (const entry of inflight) {
      entry.slot = undefined
      // A payload whose bytes were moved to the dead thread (a task declared with `transfer`) cannot be sent again.
      const moved = entry.message instanceof Binary && entry.message.moved
      if (
        (entry.started && !startedNone) || entry.interruptRequested || entry.timedOut || entry.endedByShutdown || moved
      ) {
        const reason = [
          worker.killReason?.message ?? worker.crashReason,
          moved && !entry.started ? movedReason : undefined
        ].filter((part) => part !== undefined).join("; ")
        const limit = entry.started ? entry.limit ?? worker.limit : undefined
        this.finish(
          entry,
          limit !== undefined
            ? new LimitExceeded({ task: entry.tag, limit: limit.name, value: limit.value, pid: worker.pid })
            : new WorkerCrashed({
              pid: worker.pid,
              exitCode: worker.exitCode,
              signal: worker.signal,
              task: entry.tag,
              ...(reason !== "" ? { reason } : {})
            })
        )
      } else {
        // Its timeout counts from when it really starts.
        entry.timer?.()
        entry.timer = undefined
        entry.started = false
        requeue.push(entry)
      }
    }
    inflight.length = 0
    for (let i = requeue.length - 1; i >= 0; i--) this.queue.putBack(requeue[i])
    this.dispatch()
    this.checkIdle()
  }

  /** The entry `id` that worker `slot` holds, if any. */
  entryOf(slot: Slot, id: number): Entry | undefined {
    return sentEntry(slot, id)
  }

  /**
   * Tasks waiting for a worker, including those waiting for room in the
   * queue, with a map's items one by one; counted when asked.
   */
  queuedItems(): number {
    return this.queue.items()
  }

  /** Tasks sent to workers and not yet answered, with a map's items one by one; counted when asked. */
  inflightItems(): number {
    let items = 0
    for (const slot of this.slots) {
      for (const entry of slot.inflight) items += entry.batchSize === 0 ? 1 : entry.batchSize - entry.received
    }
    return items
  }

  /** How long the workers, those gone included, have held work in all, in the clock's milliseconds, up to `now`. */
  busyTime(now: number): number {
    let total = this.busyOfGone
    for (const slot of this.slots) total += slotBusy(slot, now)
    return total
  }

  /** Whether a worker holds no task. */
  isIdle(slot: Slot): boolean {
    return slot.inflight.length === 0
  }

  // -------------------------------------------------------------------------
  // Submission and routing
  // -------------------------------------------------------------------------

  /** Accepts an entry: sends it at once when a worker has room, else queues it. */
  submit(entry: Entry): void {
    if (this.broken !== undefined) return this.finish(entry, this.broken)
    if (this.closing) return this.finish(entry, this.poolClosed(entry))
    if (this.queue.size === 0) {
      const refused = entry.admit?.()
      if (refused !== undefined) return this.finish(entry, refused)
      const slot = leastLoaded(this.slots, this.window, this.options)
      if (slot !== undefined) {
        this.send(slot, entry)
        entry.submittedAt = entry.sentAt
        return
      }
    }
    if (this.timed) entry.submittedAt = this.turnNow()
    const offered = this.queue.offer(entry)
    if (offered === Offered.Refused) {
      return this.finish(entry, new QueueFull({ task: entry.tag, maxQueue: this.options.maxQueue }))
    }
    this.events.queued?.(entry)
    if (offered === Offered.Queued) this.fleet?.grow(this.queue.size, this.window)
  }

  private send(slot: Slot, entry: Entry): void {
    entry.state = EntryState.Sent
    entry.slot = slot
    const now = entry.sentAt = this.clock.now()
    if (slot.inflight.length === 0) {
      this.fleet?.sending(slot)
      slot.busySince = now
    }
    slot.idleSince = 0
    if (entry.onItems !== undefined) slot.streams++
    slot.inflight.push(entry)
    this.inflightCount++
    if (entry.logLevel !== undefined) slot.worker.sendMessage(Message.logLevel(entry.id, entry.logLevel))
    slot.worker.send(entry.message, entry.id)
    this.events.sent?.(entry, slot.worker.pid)
    if (slot.inflight.length <= this.options.workerConcurrency) this.markStarted(entry, now)
  }

  /** The worker runs its tasks in order, `workerConcurrency` at a time: the first ones in flight are running. */
  private markStarted(entry: Entry, now: number): void {
    if (entry.started) return
    entry.started = true
    if (this.timed) entry.startedAt = entry.partAt = now
    this.events.started?.(entry)
    if (this.options.maxCpuTime > 0) this.watchCpu(entry)
    if (entry.timeout > 0) {
      entry.timer = this.clock.after(entry.timeout, () => {
        entry.timer = undefined
        const slot = entry.slot
        // Judged after the pipes are read: an answer that came while the parent was blocked wins.
        afterReading(() => {
          if (entry.state !== EntryState.Sent || entry.slot !== slot) return
          entry.timedOut = true
          this.stop(entry)
        })
      })
    }
  }

  /**
   * Kills the worker of a running entry once the worker has used
   * `maxCpuTime` of CPU time since the entry started (for a chunk, since its
   * last part came back: see `receivePart`). The worker runs one task at a
   * time (`maxCpuTime` refuses `workerConcurrency` above 1), so its CPU time
   * is the task's. The first look is after `maxCpuTime`, each next one after
   * what is left, read again then.
   */
  private watchCpu(entry: Entry): void {
    const slot = entry.slot
    const base = slot?.worker.cpuTime?.()
    if (slot === undefined || base === undefined) return
    entry.cpuBase = base
    entry.cpuBaseAt = this.clock.now()
    const limit = this.options.maxCpuTime
    let cancel: Cancel | undefined
    const look = (after: number): void => {
      cancel = this.clock.after(after, () =>
        // Judged after the pipes are read: an answer that came while the parent was blocked wins.
        afterReading(() => {
          if (entry.state !== EntryState.Sent || entry.slot !== slot) return
          const used = (slot.worker.cpuTime?.() ?? entry.cpuBase) - entry.cpuBase
          if (used < limit) return look(Math.max(10, limit - used))
          entry.limit = { name: "maxCpuTime", value: limit }
          slot.worker.kill(KillReason.cpuTime(entry.tag, limit))
        }))
    }
    look(limit)
    this.whenDone(entry, () => cancel?.())
  }

  /** Sends queued entries to every worker with room. */
  private dispatch(): void {
    while (this.queue.size > 0) {
      const slot = leastLoaded(this.slots, this.window, this.options)
      if (slot === undefined) return
      this.sendQueued(slot)
    }
  }

  /** Sends queued entries to one worker that has just made room. */
  private fill(slot: Slot): void {
    while (this.queue.size > 0 && hasRoom(slot, this.window, this.options)) this.sendQueued(slot)
  }

  /** Sends the first queued entry, unless it may no longer start: then it ends with the error it was given. */
  private sendQueued(slot: Slot): void {
    const entry = this.queue.take()!
    const refused = entry.admit?.()
    if (refused === undefined) this.send(slot, entry)
    else this.finish(entry, refused)
  }

  /**
   * Tops up the workers that are down to half their prefetch. Refilling on
   * every reply would send one task per write and per read on both sides; with
   * this low-water mark, tiny tasks travel by the hundred, and a worker still
   * holds half its prefetch, enough to hide the round trip, when the refill
   * is sent.
   */
  private refill(): void {
    const lowWater = this.window - ((this.window - this.options.workerConcurrency + 1) >> 1)
    for (const slot of this.slots) {
      if (this.queue.size === 0) return
      if (slot.inflight.length <= lowWater) this.fill(slot)
    }
  }

  // -------------------------------------------------------------------------
  // Replies
  // -------------------------------------------------------------------------

  /**
   * A worker's answer about one of its tasks. Returns why the worker can no
   * longer be trusted, if the answer breaks the protocol.
   */
  reply(slot: Slot, message: FromWorkerMessage): string | undefined {
    switch (message[0]) {
      case FromWorker.Items:
        return this.receiveItems(slot, message[1], message[2])
      case FromWorker.BatchPart:
        return this.receivePart(slot, message[1], message[2] === 1, message[3], message[4])
      case FromWorker.Exit:
      case FromWorker.BatchExit:
      case FromWorker.BatchValues:
        return this.receiveAnswer(slot, message)
      default:
        return `an unexpected message from the worker: kind ${message[0]}`
    }
  }

  /** A task's or a batch's answer: the entry ends with it. */
  private receiveAnswer(slot: Slot, message: Reply & ReadonlyArray<unknown>): string | undefined {
    const inflight = slot.inflight
    const id = message[1]
    let index = 0
    // Replies come nearly in the order tasks were sent: the entry is almost always first.
    while (index < inflight.length && inflight[index].id !== id) index++
    if (index === inflight.length) return undefined
    const entry = inflight[index]
    const kind = message[0]
    if (kind !== FromWorker.Exit && (message[2] as Array<unknown>).length !== entry.batchSize - entry.received) {
      return `a malformed answer to batch ${id} from the worker`
    }
    if (index === 0) inflight.shift()
    else inflight.splice(index, 1)
    this.inflightCount--
    if (entry.onItems !== undefined) slot.streams--
    entry.slot = undefined
    slot.tasksDone++
    const now = this.clock.now()
    this.measure(slot, entry, now)
    const running = Math.min(this.options.workerConcurrency, inflight.length)
    for (let i = 0; i < running; i++) this.markStarted(inflight[i], now)
    if (inflight.length === 0) {
      slot.idleSince = now
      slot.busyTotal += now - slot.busySince
    }
    // The caller resumes inside `finish` and may submit again at once: the worker's state is settled first.
    this.finish(entry, message, now)
    this.fleet?.answered(slot)
    if (this.queue.size > 0) this.refill()
    this.checkIdle()
    return undefined
  }

  /** The next items of a streaming task: handed to its caller, who acknowledges them as they are taken. */
  private receiveItems(slot: Slot, id: number, values: Array<unknown>): string | undefined {
    const entry = sentEntry(slot, id)
    // Items of an entry the parent no longer holds (it was interrupted meanwhile) are dropped.
    if (entry === undefined) return undefined
    if (entry.onItems === undefined) return `unexpected items for task ${id} from the worker`
    // Items mean the stream runs: its timeout counts from now, and a crash now fails it.
    if (!entry.started) this.markStarted(entry, this.clock.now())
    entry.onItems(values)
    return undefined
  }

  /**
   * Results of a batch that went ahead of its reply. They count from where
   * the last part ended; what the reply holds then starts after them.
   */
  private receivePart(slot: Slot, id: number, exits: boolean, items: Array<unknown>, next: number): string | undefined {
    const entry = sentEntry(slot, id)
    if (entry === undefined) return undefined
    if (entry.onPart === undefined || entry.received + items.length >= entry.batchSize) {
      return `a malformed part of batch ${id} from the worker`
    }
    if (!entry.started) this.markStarted(entry, this.clock.now())
    // `maxCpuTime` counts from here for the chunk's next items: read again at most once a clock tick (10 ms).
    else if (entry.limit === undefined && this.options.maxCpuTime > 0 && this.clock.now() - entry.cpuBaseAt >= 10) {
      entry.cpuBase = slot.worker.cpuTime?.() ?? entry.cpuBase
      entry.cpuBaseAt = this.clock.now()
    }
    entry.received += items.length
    entry.window = next
    if (this.events.part !== undefined) this.events.part(entry, exits, items, this.clock.now())
    entry.onPart(exits, items)
    return undefined
  }

  /** Lets a streaming task's worker produce `n` more items: the caller took that many. */
  ack(entry: Entry, n: number): void {
    if (entry.state === EntryState.Sent && entry.slot !== undefined) {
      entry.slot.worker.sendMessage(Message.ack(entry.id, n))
    }
  }

  /**
   * Learns how long a task takes, and sizes the window from it: tiny tasks are
   * sent far ahead, so the round trip is hidden; longer ones one ahead, so the
   * next payload crosses the pipe while the current task runs, and at most one
   * task waits behind a busy worker while another is idle.
   */
  private measure(slot: Slot, entry: Entry, now: number): void {
    const sample = (now - Math.max(entry.sentAt, slot.lastReplyAt)) * this.options.workerConcurrency
    slot.lastReplyAt = now
    this.serviceTime = Number.isNaN(this.serviceTime) ? sample : this.serviceTime * 0.9 + sample * 0.1
    if (this.options.prefetch !== "auto") return
    const prefetch = Math.min(256, Math.max(1, Math.ceil(0.5 / this.serviceTime)))
    this.window = this.options.workerConcurrency + prefetch
  }

  /** Ends an entry exactly once. */
  private finish(entry: Entry, reply: Reply, now?: number): void {
    if (entry.state === EntryState.Done) return
    entry.state = EntryState.Done
    if (entry.timer !== undefined) entry.timer()
    const outcome = entry.timedOut
      ? new TaskTimeout({ task: entry.tag, timeout: entry.timeout })
      : entry.endedByShutdown
      ? this.poolClosed(entry)
      : entry.interruptRequested && !isPoolErrorReply(reply)
      ? interrupted
      : reply
    if (this.timed) this.events.settled!(entry, outcome, now ?? this.clock.now())
    const decoded = entry.decode(outcome)
    // A success the caller could not decode (its Schema is not the worker's) ends as a SerializationError.
    if (
      this.timed && entry.batchSize === 0 && !isPoolErrorReply(outcome) && outcome[2] === ExitKind.Success &&
      (decoded as { readonly _tag?: unknown })._tag === "Failure"
    ) {
      this.events.undecoded?.(entry)
    }
    entry.resume(decoded)
    const callbacks = entry.doneCallbacks
    if (callbacks !== undefined) {
      entry.doneCallbacks = undefined
      for (const callback of callbacks) callback()
    }
  }

  /** Calls `callback` once the entry has ended: now, if it has. */
  whenDone(entry: Entry, callback: () => void): void {
    if (entry.state === EntryState.Done) return callback()
    ;(entry.doneCallbacks ??= []).push(callback)
  }

  // -------------------------------------------------------------------------
  // Interruption
  // -------------------------------------------------------------------------

  /**
   * Cancels an entry whose caller was interrupted: a queued or waiting entry
   * is dropped at once, a sent one is stopped in its worker. Use {@link whenDone} to wait
   * for the stop.
   */
  cancel(entry: Entry): void {
    switch (entry.state) {
      case EntryState.Waiting:
      case EntryState.Queued: {
        this.queue.remove(entry)
        if (this.timed) this.events.settled!(entry, interrupted, this.clock.now())
        return this.checkIdle()
      }
      case EntryState.Sent: {
        entry.interruptRequested = true
        return this.stop(entry)
      }
    }
  }

  /**
   * Asks the worker to interrupt a sent entry, and kills it if it has not
   * stopped within the grace. The grace starts once the Interrupt is written
   * (the writer flushes on a microtask queued before this one), and is judged
   * after the pipes are read: a parent blocked meanwhile, before or after the
   * write, does not get the worker killed.
   */
  private stop(entry: Entry): void {
    const slot = entry.slot
    if (slot === undefined) return
    const worker = slot.worker
    worker.sendMessage(Message.interrupt(entry.id))
    let grace: Cancel | undefined
    queueMicrotask(() => {
      if (entry.state === EntryState.Done) return
      grace = this.clock.after(this.options.interruptGrace, () =>
        afterReading(() => {
          if (entry.state !== EntryState.Done && entry.slot === slot) {
            worker.kill(KillReason.runaway(entry.tag, this.options.interruptGrace))
          }
        }))
    })
    this.whenDone(entry, () => grace?.())
  }

  // -------------------------------------------------------------------------
  // Closing
  // -------------------------------------------------------------------------

  private get pending(): number {
    return this.queue.size + this.inflightCount + this.queue.waiting
  }

  private checkIdle(): void {
    if (this.onIdle !== undefined && this.pending === 0) {
      const onIdle = this.onIdle
      this.onIdle = undefined
      onIdle()
    }
  }

  /** Calls `callback` once nothing is queued or in flight: now, if so. Returns a cancel. */
  whenIdle(callback: () => void): () => void {
    if (this.pending === 0) {
      callback()
      return () => {}
    }
    this.onIdle = callback
    return () => {
      if (this.onIdle === callback) this.onIdle = undefined
    }
  }

  /** Refuses new work from now on, with `PoolClosed`. */
  close(): void {
    this.closing = true
  }

  /** The workers are gone: `PoolClosed` says "closed" from now on. */
  closedForGood(): void {
    this.closed = true
  }

  /** The workers cannot start: queued and new entries fail with `error`. */
  break(error: PoolError): void {
    this.broken = error
    this.failQueued(() => error)
  }

  /** Whether the pool is broken. */
  get isBroken(): boolean {
    return this.broken !== undefined
  }

  /** Ends every queued and waiting entry with `PoolClosed`. */
  closeQueued(): void {
    this.failQueued((entry) => this.poolClosed(entry))
  }

  /** Stops every sent entry in its worker; each ends with `PoolClosed` once stopped. */
  interruptSent(): void {
    for (const entry of this.sentEntries()) {
      entry.endedByShutdown = true
      this.stop(entry)
    }
  }

  /** Ends every sent entry at once with `PoolClosed`: its worker is about to be killed. */
  endSent(): void {
    for (const entry of this.sentEntries()) {
      entry.endedByShutdown = true
      this.finish(entry, this.poolClosed(entry))
    }
  }

  /** Ends every waiting and queued entry with `error`. */
  private failQueued(error: (entry: Entry) => PoolError): void {
    this.queue.clear((entry) => this.finish(entry, error(entry)))
  }

  /** The `PoolClosed` of an entry refused or ended by the pool's closing, saying how far the closing has gone. */
  private poolClosed(entry: Entry): PoolClosed {
    return new PoolClosed({ task: entry.tag, state: this.closed ? "closed" : "closing" })
  }

  private sentEntries(): Array<Entry> {
    const entries: Array<Entry> = []
    for (const slot of this.slots) entries.push(...slot.inflight)
    return entries
  }

  // -------------------------------------------------------------------------
  // Stats
  // -------------------------------------------------------------------------

  /** What the dispatcher knows of one worker. */
  slotStats(slot: Slot): { inflight: number; running: number; prefetched: number; busy: boolean; tasksDone: number } {
    let running = 0
    for (const entry of slot.inflight) if (entry.started) running++
    return {
      inflight: slot.inflight.length,
      running,
      prefetched: slot.inflight.length - running,
      busy: running > 0,
      tasksDone: slot.tasksDone
    }
  }

  /** What the dispatcher knows of the pool: its state, and its tasks, each batch counted once. */
  stats(): {
    readonly state: "open" | "closing" | "closed"
    readonly queued: number
    readonly inflight: number
    readonly running: number
  } {
    let running = 0
    for (const slot of this.slots) for (const entry of slot.inflight) if (entry.started) running++
    return {
      state: this.closed ? "closed" : this.closing ? "closing" : "open",
      queued: this.queue.size + this.queue.waiting,
      inflight: this.inflightCount,
      running
    }
  }
}

/** How long a worker has held work, up to `now`. */
const slotBusy = (slot: Slot, now: number): number =>
  slot.busyTotal + (slot.inflight.length > 0 ? now - slot.busySince : 0)

/** The entry `id` among those sent to a worker: almost always the first, as replies come nearly in order. */
const sentEntry = (slot: Slot, id: number): Entry | undefined => {
  const inflight = slot.inflight
  for (let i = 0; i < inflight.length; i++) if (inflight[i].id === id) return inflight[i]
  return undefined
}
