/**
 * What the dispatcher, the client and the pool's telemetry share: one call's
 * trip through the pool (`Entry`), the reply it ends with (`Reply`), and one
 * ready worker as the dispatcher sees it (`Slot`). Plain records: the client
 * makes an entry and sets its caller's side (context, log level, callbacks),
 * the dispatcher moves it and its worker's slot, the telemetry reads them.
 *
 * @internal
 */
import type * as Context from "effect/Context"
import type * as LogLevel from "effect/LogLevel"
import type { PoolError } from "../../PoolError.ts"
import type { Cancel } from "../clock.ts"
import type { Admit } from "../service/backend.ts"
import type { Binary } from "../wire/binary.ts"
import type { FromWorker, FromWorkerMessage } from "../wire/protocol.ts"
import type { Limit, WorkerConnection } from "./workerProcess.ts"

/**
 * What a caller's entry ends with: the worker's answer (a task's `Exit`, a
 * batch's item exits or values), or a `PoolError` the pool decided on.
 *
 * @internal
 */
export type Reply =
  | Extract<FromWorkerMessage, readonly [typeof FromWorker.Exit, ...Array<any>]>
  | Extract<FromWorkerMessage, readonly [typeof FromWorker.BatchExit, ...Array<any>]>
  | Extract<FromWorkerMessage, readonly [typeof FromWorker.BatchValues, ...Array<any>]>
  | PoolError

/** Whether a reply is a `PoolError` rather than a worker's answer. @internal */
export const isPoolErrorReply = (reply: Reply): reply is PoolError => !Array.isArray(reply)

/**
 * Turns a reply into the caller's outcome. Shared by every entry of a task:
 * no closure is allocated per entry.
 *
 * @internal
 */
export type Decode = (reply: Reply) => unknown

/**
 * Where an entry is in its trip: waiting for room in the queue (queuePolicy
 * "wait"), in the queue, sent to a worker, or ended.
 *
 * @internal
 */
export const EntryState = {
  Waiting: 0,
  Queued: 1,
  Sent: 2,
  Done: 3
} as const

/** One call's trip through the pool: a task, a batch of a `map`, or a streaming task. @internal */
export class Entry {
  /** Where it is: see {@link EntryState}. */
  state: number = EntryState.Waiting
  /** The worker it was sent to, while it is there. */
  slot: Slot | undefined = undefined
  started = false
  interruptRequested = false
  timedOut = false
  /**
   * Ended by the pool's shutdown after it was sent: stopped in its worker in
   * `interrupt` mode, or cut off when the workers close. It ends with `PoolClosed`.
   */
  endedByShutdown = false
  /** Cancels the timeout, while one runs. */
  timer: Cancel | undefined = undefined
  /** When it was sent, in the clock's milliseconds. */
  sentAt = 0
  /** When it was submitted, and when it started in its worker: kept only for the `settled` event. */
  submittedAt = 0
  startedAt = 0
  /** When its last part came back, or it started: for the `part` and `settled` events. */
  partAt = 0
  /** The caller's context, where the worker's log lines for this entry are delivered. */
  caller: Context.Context<never> | undefined = undefined
  /** The caller's minimum log level, when it is not the pool's: the worker applies it to this entry. */
  logLevel: LogLevel.LogLevel | undefined = undefined
  /** Asked at the moment it would be sent to a worker: a pool error when it must not start (see `Admit`). */
  admit: Admit | undefined = undefined
  /** The limit it passed (`maxCpuTime`), once its worker was killed for that. */
  limit: Limit | undefined = undefined
  /** Its worker's CPU time, in ms, when it started or its last part came back: `maxCpuTime` counts from there. */
  cpuBase = 0
  /** When `cpuBase` was read, on the pool's clock. */
  cpuBaseAt = 0
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
  /** The encoded Run, RunBatch or RunStream message. */
  readonly message: string | Binary
  /** Milliseconds from start to TaskTimeout; 0 for none. */
  readonly timeout: number
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
}

/** One ready worker, as the dispatcher sees it: what it holds and how busy it has been. @internal */
export class Slot {
  readonly worker: WorkerConnection
  /** Entries sent to it and not yet answered, in the order they were sent. */
  readonly inflight: Array<Entry> = []
  /** Whether it takes new work: not once it is recycled, idle-stopped or stopping. */
  open = true
  /** Streaming tasks among `inflight`: a stream may hold its worker as long as its consumer waits. */
  streams = 0
  tasksDone = 0
  /** When its last reply arrived, in the clock's milliseconds. */
  lastReplyAt = 0
  /** Since when it has had nothing in flight; 0 while busy. */
  idleSince: number
  /** Since when it has held work, while it does. */
  busySince = 0
  /** How long it held work, in the clock's milliseconds, up to `busySince`. */
  busyTotal = 0
  constructor(worker: WorkerConnection, now: number) {
    this.worker = worker
    this.idleSince = now
  }
}
