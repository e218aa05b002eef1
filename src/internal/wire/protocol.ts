/**
 * The wire between the parent and one worker: a dedicated pipe (fd 3 in the
 * child) carrying length-prefixed JSON frames.
 *
 * A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON: an
 * array of the messages sent during one tick, so that one read and one
 * `JSON.parse` serve many tasks. Each message is itself a JSON array whose
 * first element is its kind. Arrays keep frames small and parsing cheap.
 *
 * ```
 * parent -> worker
 *   [Run,       id, tag, payload, trace]      one task
 *   [RunBatch,  id, tag, [payload, ...], trace, every]
 *                                             many payloads of one task, one reply; the results of
 *                                             every `every` items go ahead as a BatchPart
 *   [Interrupt, id]                           stop task id (queued or running)
 *   [Shutdown]                                finish and exit
 *   [Ping, seq]                               answer at once: the event loop is alive
 *   [Release, offset]                         the parent has read what the worker put at offset
 *                                             in its shared file: the region is free
 *   [RunStream, id, tag, payload, trace, window] a streaming task: it may send `window` items ahead
 *   [Ack, id, n]                              the consumer took n more items of stream id
 *   [LogLevel, id, level]                     task id, sent next, runs with this minimum log level
 *                                             rather than the pool's: its caller asked for another
 * worker -> parent
 *   [Ready, pid]                              the module is loaded, services are built
 *   [Exit,  id, kind, value]                  task id ended (kind: ExitKind)
 *   [BatchExit, id, [[kind, value], ...]]     every item of batch id ended
 *   [BatchValues, id, [value, ...]]           every item of batch id succeeded: the values alone
 *   [BatchPart, id, 0, [value, ...], next]    the next items of batch id succeeded, written before
 *   [BatchPart, id, 1, [[kind, value], ...], next] the item after them starts; the next part holds
 *                                             `next` items at most; BatchExit or BatchValues then
 *                                             holds only the items after the last part
 *   [Pong, seq, rss]                          the answer to Ping, with the resident set size
 *   [Recycle]                                 past its memory ceiling: replace me
 *   [StartFailed, summary]                    instead of Ready: why the worker cannot start, the user's error first
 *   [Items, id, [value, ...]]                 the next items of stream id; its Exit follows the last
 *   [Log, id, level, [part, ...], time, annotations, spans, cause]
 *                                             a log line of task id (0: outside any task), at or above
 *                                             the parent's minimum level; time in epoch ms; annotations
 *                                             {key: value} or 0; spans [[label, start], ...] or 0; cause
 *                                             an encoded defect or 0. It goes before the task's answer
 *   [Metrics, [[series, value] or [series, value, type, name, description, attributes], ...]]
 *                                             the worker's own metrics, changed since the last Metrics:
 *                                             a series is described the first time it travels (see
 *                                             MetricValue); sent before the answers they precede
 * ```
 *
 * A message of 64 KiB or more may instead be written to the sender's shared
 * file, with only a reference (a shared frame) on the pipe: see `Shared`.
 *
 * `trace` is `0` or `[traceId, spanId, sampled]`, the caller's span, so that
 * worker spans can join the caller's trace. Kinds not listed are reserved.
 *
 * @internal
 */
import type * as LogLevel from "effect/LogLevel"

/** @internal */
export const ToWorker = {
  Run: 0,
  Interrupt: 1,
  Shutdown: 2,
  RunBatch: 3,
  Ping: 4,
  Release: 5,
  RunStream: 6,
  Ack: 7,
  LogLevel: 8
} as const

/** @internal */
export const FromWorker = {
  Ready: 0,
  Exit: 1,
  BatchExit: 2,
  Pong: 3,
  Recycle: 4,
  BatchValues: 5,
  StartFailed: 6,
  Items: 7,
  BatchPart: 8,
  Log: 9,
  Metrics: 10
} as const

/** @internal */
export const ExitKind = {
  /** value: the encoded success */
  Success: 0,
  /** value: the encoded typed failure */
  Failure: 1,
  /** value: the encoded defect */
  Defect: 2,
  /** the task was interrupted at the parent's request; no value */
  Interrupted: 3,
  /** value: the issue; the worker could not decode the payload */
  PayloadInvalid: 4,
  /** value: the issue; the worker could not encode the result */
  ResultInvalid: 5,
  /** the module serves no handler for the tag; no value */
  NotServed: 6
} as const

/** @internal */
export type ExitKind = typeof ExitKind[keyof typeof ExitKind]

/** Whether a value is a known `ExitKind`. @internal */
export const isExitKind = (u: unknown): u is ExitKind =>
  typeof u === "number" && Number.isInteger(u) && u >= ExitKind.Success && u <= ExitKind.NotServed

/**
 * The most parts a batch is written in (see `BatchPart`), whatever its items
 * take: a part costs a write on each side. So `every`, the parent's guess and
 * the worker's measure alike, is never below a batch's length over this.
 *
 * @internal
 */
export const maxParts = 8

/**
 * The key that holds a worker's pid: the attribute of a worker's own series of
 * a metric (`Worker.perWorker`), whose value the parent sets to the pid of the
 * worker that sent each update, and the annotation of a worker's log lines in
 * the parent.
 *
 * @internal
 */
export const workerPidKey = "process_pool.worker_pid"

// ---------------------------------------------------------------------------
// Messages, as the tuples that travel: one type and one constructor each
// ---------------------------------------------------------------------------

/** The caller's span as `[traceId, spanId, sampled]`, or `0` for none. @internal */
export type Trace = readonly [traceId: string, spanId: string, sampled: boolean] | 0

/** A message from the parent to a worker. @internal */
export type ToWorkerMessage =
  | readonly [kind: typeof ToWorker.Run, id: number, tag: string, payload: unknown, trace: Trace]
  | readonly [
    kind: typeof ToWorker.RunBatch,
    id: number,
    tag: string,
    payloads: ReadonlyArray<unknown>,
    trace: Trace,
    every: number
  ]
  | readonly [kind: typeof ToWorker.RunStream, id: number, tag: string, payload: unknown, trace: Trace, window: number]
  | readonly [kind: typeof ToWorker.Interrupt, id: number]
  | readonly [kind: typeof ToWorker.Shutdown]
  | readonly [kind: typeof ToWorker.Ping, seq: number]
  | readonly [kind: typeof ToWorker.Release, offset: number]
  | readonly [kind: typeof ToWorker.Ack, id: number, n: number]
  | readonly [kind: typeof ToWorker.LogLevel, id: number, level: LogLevel.LogLevel]

/** A message from a worker to the parent. @internal */
export type FromWorkerMessage =
  | readonly [kind: typeof FromWorker.Ready, pid: number]
  | readonly [kind: typeof FromWorker.StartFailed, summary: string]
  | readonly [kind: typeof FromWorker.Exit, id: number, exit: ExitKind, value?: unknown]
  | readonly [kind: typeof FromWorker.BatchExit, id: number, items: Array<readonly [ExitKind, unknown?]>]
  | readonly [kind: typeof FromWorker.BatchValues, id: number, values: Array<unknown>]
  | readonly [kind: typeof FromWorker.BatchPart, id: number, exits: 0 | 1, items: Array<unknown>, next: number]
  | readonly [kind: typeof FromWorker.Items, id: number, values: Array<unknown>]
  | readonly [kind: typeof FromWorker.Pong, seq: number, rss: number]
  | readonly [kind: typeof FromWorker.Recycle]
  | LogMessage
  | MetricsMessage

/** A log line from a worker: see the table above. @internal */
export type LogMessage = readonly [
  kind: typeof FromWorker.Log,
  id: number,
  level: LogLevelName,
  message: Array<unknown>,
  time: number,
  annotations: Readonly<Record<string, unknown>> | 0,
  spans: ReadonlyArray<readonly [label: string, start: number]> | 0,
  cause: unknown
]

/** The levels a worker's log line may have. @internal */
export type LogLevelName = "Fatal" | "Error" | "Warn" | "Info" | "Debug" | "Trace"

const logLevels: ReadonlySet<unknown> = new Set(["Fatal", "Error", "Warn", "Info", "Debug", "Trace"])

/** The kinds of metric a worker forwards. @internal */
export type MetricType = "Counter" | "Gauge" | "Histogram" | "Frequency"

/**
 * What changed in one series since it last travelled:
 * - Counter: the increase.
 * - Gauge: the value now.
 * - Histogram: `[boundaries, increases of the cumulative bucket counts, count increase, sum increase, min, max]`.
 * - Frequency: `[[word, increase], ...]`.
 *
 * @internal
 */
export type MetricValue =
  | number
  | readonly [
    boundaries: ReadonlyArray<number>,
    buckets: ReadonlyArray<number>,
    count: number,
    sum: number,
    min: number,
    max: number
  ]
  | ReadonlyArray<readonly [word: string, count: number]>

/** One series in a Metrics message: its number in this worker, and its description the first time. @internal */
export type MetricUpdate =
  | readonly [series: number, value: MetricValue]
  | readonly [
    series: number,
    value: MetricValue,
    type: MetricType,
    name: string,
    description: string | 0,
    attributes: Readonly<Record<string, string>>
  ]

/** The worker's own metrics: see the table above. @internal */
export type MetricsMessage = readonly [kind: typeof FromWorker.Metrics, updates: ReadonlyArray<MetricUpdate>]

/**
 * The constructors of every message, in both directions. Every module builds
 * messages through these, and reads them through {@link decodeToWorker} and
 * {@link decodeFromWorker}.
 *
 * @internal
 */
export const Message = {
  run: (
    id: number,
    tag: string,
    payload: unknown,
    trace: Trace
  ): ToWorkerMessage => [ToWorker.Run, id, tag, payload, trace],
  runBatch: (
    id: number,
    tag: string,
    payloads: ReadonlyArray<unknown>,
    trace: Trace,
    every: number
  ): ToWorkerMessage => [ToWorker.RunBatch, id, tag, payloads, trace, every],
  runStream: (
    id: number,
    tag: string,
    payload: unknown,
    trace: Trace,
    window: number
  ): ToWorkerMessage => [ToWorker.RunStream, id, tag, payload, trace, window],
  interrupt: (id: number): ToWorkerMessage => [ToWorker.Interrupt, id],
  shutdown: [ToWorker.Shutdown] as ToWorkerMessage,
  ping: (seq: number): ToWorkerMessage => [ToWorker.Ping, seq],
  release: (offset: number): ToWorkerMessage => [ToWorker.Release, offset],
  ack: (id: number, n: number): ToWorkerMessage => [ToWorker.Ack, id, n],
  logLevel: (id: number, level: LogLevel.LogLevel): ToWorkerMessage => [ToWorker.LogLevel, id, level],

  ready: (pid: number): FromWorkerMessage => [FromWorker.Ready, pid],
  startFailed: (summary: string): FromWorkerMessage => [FromWorker.StartFailed, summary],
  exit: (id: number, exit: ExitKind, value?: unknown): FromWorkerMessage =>
    value === undefined ? [FromWorker.Exit, id, exit] : [FromWorker.Exit, id, exit, value],
  batchExit: (
    id: number,
    items: Array<readonly [ExitKind, unknown?]>
  ): FromWorkerMessage => [FromWorker.BatchExit, id, items],
  batchValues: (id: number, values: Array<unknown>): FromWorkerMessage => [FromWorker.BatchValues, id, values],
  batchPart: (
    id: number,
    exits: 0 | 1,
    items: Array<unknown>,
    next: number
  ): FromWorkerMessage => [FromWorker.BatchPart, id, exits, items, next],
  items: (id: number, values: Array<unknown>): FromWorkerMessage => [FromWorker.Items, id, values],
  pong: (seq: number, rss: number): FromWorkerMessage => [FromWorker.Pong, seq, rss],
  recycle: [FromWorker.Recycle] as FromWorkerMessage,
  log: (
    id: number,
    level: LogLevelName,
    message: Array<unknown>,
    time: number,
    annotations: Readonly<Record<string, unknown>> | 0,
    spans: ReadonlyArray<readonly [string, number]> | 0,
    cause: unknown
  ): LogMessage => [FromWorker.Log, id, level, message, time, annotations, spans, cause],
  metrics: (updates: ReadonlyArray<MetricUpdate>): MetricsMessage => [FromWorker.Metrics, updates]
} as const

/** Why a message was refused: the stream it came on cannot be trusted after it. @internal */
export class MessageInvalid {
  readonly reason: string
  constructor(reason: string) {
    this.reason = reason
  }
}

const isId = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u)
const isCount = (u: unknown): boolean => typeof u === "number" && u >= 1
const isTrace = (u: unknown): boolean =>
  u === 0 || (Array.isArray(u) && typeof u[0] === "string" && typeof u[1] === "string")

const describe = (message: unknown): string => {
  try {
    return JSON.stringify(message).slice(0, 200)
  } catch {
    return String(message).slice(0, 200)
  }
}

/**
 * Reads a message from the parent: the message itself, typed, or why it is
 * not one. Kinds it does not know are refused.
 *
 * @internal
 */
export const decodeToWorker = (message: unknown): ToWorkerMessage | MessageInvalid => {
  if (!Array.isArray(message)) return new MessageInvalid("a message from the parent is not an array")
  switch (message[0]) {
    case ToWorker.Run:
      if (isId(message[1]) && typeof message[2] === "string" && isTrace(message[4] ?? 0)) {
        return message as unknown as ToWorkerMessage
      }
      break
    case ToWorker.RunBatch:
      if (isId(message[1]) && typeof message[2] === "string" && Array.isArray(message[3])) {
        return message as unknown as ToWorkerMessage
      }
      break
    case ToWorker.RunStream:
      if (isId(message[1]) && typeof message[2] === "string" && isCount(message[5])) {
        return message as unknown as ToWorkerMessage
      }
      break
    case ToWorker.Interrupt:
    case ToWorker.Ping:
    case ToWorker.Release:
      if (typeof message[1] === "number") return message as unknown as ToWorkerMessage
      break
    case ToWorker.LogLevel:
      if (isId(message[1]) && (logLevels.has(message[2]) || message[2] === "All" || message[2] === "None")) {
        return message as unknown as ToWorkerMessage
      }
      break
    case ToWorker.Ack:
      if (isId(message[1]) && typeof message[2] === "number") return message as unknown as ToWorkerMessage
      break
    case ToWorker.Shutdown:
      return message as unknown as ToWorkerMessage
  }
  return new MessageInvalid(`an unexpected message from the parent: ${describe(message)}`)
}

/** Whether every element is `[ExitKind, value?]`. */
const areExits = (items: Array<unknown>): boolean => {
  for (const item of items) if (!Array.isArray(item) || !isExitKind(item[0])) return false
  return true
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null && !Array.isArray(u)

const areSpans = (u: unknown): boolean =>
  Array.isArray(u) &&
  u.every((span) => Array.isArray(span) && typeof span[0] === "string" && typeof span[1] === "number")

const isNumbers = (u: unknown): u is Array<number> => Array.isArray(u) && u.every((n) => typeof n === "number")

const metricTypes: ReadonlySet<unknown> = new Set(["Counter", "Gauge", "Histogram", "Frequency"])

/** Whether a value fits its metric type; the type is known from the series' first update. */
const isMetricValue = (u: unknown): boolean =>
  typeof u === "number" ||
  (Array.isArray(u) && (
    u.every((word) => Array.isArray(word) && typeof word[0] === "string" && typeof word[1] === "number") ||
    (u.length === 6 && isNumbers(u[0]) && isNumbers(u[1]) && u[0].length === u[1].length &&
      typeof u[2] === "number" && typeof u[3] === "number" && typeof u[4] === "number" && typeof u[5] === "number")
  ))

const isMetricUpdate = (u: unknown): boolean =>
  Array.isArray(u) && isId(u[0]) && isMetricValue(u[1]) &&
  (u.length === 2 ||
    (u.length === 6 && metricTypes.has(u[2]) && typeof u[3] === "string" && (u[4] === 0 || typeof u[4] === "string") &&
      isRecord(u[5]) && Object.values(u[5]).every((value) => typeof value === "string")))

/**
 * Reads a message from a worker: the message itself, typed, or why it is not
 * one. Kinds it does not know are refused.
 *
 * @internal
 */
export const decodeFromWorker = (message: unknown): FromWorkerMessage | MessageInvalid => {
  if (!Array.isArray(message)) return new MessageInvalid("a message from the worker is not an array")
  switch (message[0]) {
    case FromWorker.Exit:
      if (isId(message[1]) && isExitKind(message[2])) return message as unknown as FromWorkerMessage
      break
    case FromWorker.BatchExit:
      if (isId(message[1]) && Array.isArray(message[2]) && areExits(message[2])) {
        return message as unknown as FromWorkerMessage
      }
      break
    case FromWorker.BatchValues:
    case FromWorker.Items:
      if (isId(message[1]) && Array.isArray(message[2])) return message as unknown as FromWorkerMessage
      break
    case FromWorker.BatchPart:
      if (
        isId(message[1]) && (message[2] === 0 || message[2] === 1) && Array.isArray(message[3]) &&
        message[3].length > 0 && isCount(message[4]) && (message[2] === 0 || areExits(message[3]))
      ) {
        return message as unknown as FromWorkerMessage
      }
      break
    case FromWorker.Pong:
      if (typeof message[1] === "number") return message as unknown as FromWorkerMessage
      break
    case FromWorker.Ready:
    case FromWorker.Recycle:
      return message as unknown as FromWorkerMessage
    case FromWorker.StartFailed:
      return [FromWorker.StartFailed, String(message[1])]
    case FromWorker.Log:
      if (
        isId(message[1]) && logLevels.has(message[2]) && Array.isArray(message[3]) && typeof message[4] === "number" &&
        (message[5] === 0 || isRecord(message[5])) && (message[6] === 0 || areSpans(message[6]))
      ) {
        return message as unknown as FromWorkerMessage
      }
      break
    case FromWorker.Metrics:
      if (Array.isArray(message[1]) && message[1].every(isMetricUpdate)) return message as unknown as FromWorkerMessage
      break
  }
  return new MessageInvalid(`an unexpected message from the worker: ${describe(message)}`)
}
