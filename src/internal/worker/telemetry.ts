/**
 * The worker's side of observability: a logger that sends each log line to
 * the parent, and a metric registry that notes which series changed, so that
 * only what changed travels, as increases (see `MetricValue` in protocol.ts).
 *
 * worker/main.ts puts both in the context the handlers run in, with the
 * parent's minimum log level: lines below it are dropped here and never
 * cross the pipe.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import type * as LogLevel from "effect/LogLevel"
import type * as Metric from "effect/Metric"
import * as References from "effect/References"
import { encodeDefect } from "../wire/codec.ts"
import {
  type LogLevelName,
  type LogMessage,
  Message,
  type MetricsMessage,
  type MetricType,
  type MetricUpdate,
  type MetricValue
} from "../wire/protocol.ts"

/**
 * The id of the task a fiber runs for, 0 outside any task: the server runs
 * each task's fiber with it, and a log line says which task it belongs to.
 *
 * @internal
 */
export const CurrentTask = Context.Reference<number>("effect-process-pool/CurrentTask", { defaultValue: () => 0 })

/** Any value as JSON data, never throwing: what a log line's parts and annotations become on the wire. */
const toWire = (u: unknown): unknown => {
  switch (typeof u) {
    case "string":
    case "boolean":
      return u
    case "number":
      return Number.isFinite(u) ? u : String(u)
    case "bigint":
    case "symbol":
    case "function":
      return String(u)
    case "undefined":
      return null
  }
  if (u === null) return null
  if (u instanceof Error) return u.stack ?? `${u.name}: ${u.message}`
  try {
    const seen = new WeakSet<object>()
    return JSON.parse(
      JSON.stringify(u, (_, value: unknown) => {
        if (typeof value === "bigint") return String(value)
        if (value instanceof Error) return `${value.name}: ${value.message}`
        if (typeof value === "object" && value !== null) {
          if (seen.has(value)) return "[Circular]"
          seen.add(value)
        }
        return value
      }) ?? "null"
    )
  } catch {
    try {
      return String(u)
    } catch {
      return "a value that cannot be printed"
    }
  }
}

const levelName = (level: string): LogLevelName =>
  level === "Fatal" || level === "Error" || level === "Warn" || level === "Debug" || level === "Trace" ? level : "Info"

/**
 * A logger that turns each line into a Log message for the parent.
 *
 * @internal
 */
export const makePipeLogger = (send: (message: LogMessage) => void): Logger.Logger<unknown, void> =>
  Logger.make(({ cause, date, fiber, logLevel, message }) => {
    const parts = Array.isArray(message) ? message.map(toWire) : [toWire(message)]
    const annotations = fiber.getRef(References.CurrentLogAnnotations)
    let wireAnnotations: Record<string, unknown> | 0 = 0
    for (const key in annotations) {
      ;(wireAnnotations ||= {})[key] = toWire(annotations[key])
    }
    const spans = fiber.getRef(References.CurrentLogSpans)
    send(Message.log(
      fiber.getRef(CurrentTask),
      levelName(logLevel),
      parts,
      date.getTime(),
      wireAnnotations,
      spans.length === 0 ? 0 : spans.map(([label, start]) => [String(label), start] as const),
      cause.reasons.length === 0 ? 0 : encodeDefect(Cause.squash(cause))
    ))
  })

/** One series of the worker's registry, and what of it the parent has been told. */
class Tracked {
  readonly series: number
  readonly type: MetricType
  readonly metadata: Metric.Metric.Metadata<any, any>
  described = false
  changed = false
  /** Counter: the count sent so far. */
  count = 0
  /** Histogram: the cumulative bucket counts, count and sum sent so far. */
  buckets: Array<number> = []
  histogramCount = 0
  sum = 0
  /** Frequency: the occurrences sent so far. */
  words = new Map<string, number>()
  constructor(series: number, type: MetricType, metadata: Metric.Metric.Metadata<any, any>) {
    this.series = series
    this.type = type
    this.metadata = metadata
  }
}

const finite = (n: number): number => (Number.isFinite(n) ? n : 0)

/**
 * A metric registry that notes the series updated since the last call to
 * `take`. Effect's metrics put a series in the registry the first time they
 * touch it; the registry wraps its hooks then. Summaries are kept, and not
 * forwarded: their quantiles cannot be merged.
 *
 * @internal
 */
export class ForwardingRegistry extends Map<string, Metric.Metric.Metadata<any, any>> {
  /** Whether some series changed since the last `take`. */
  dirty = false
  private nextSeries = 0
  private changed: Array<Tracked> = []

  override set(key: string, metadata: Metric.Metric.Metadata<any, any>): this {
    // Map's constructor calls `set` before the fields exist: there is nothing to wrap then.
    if (metadata.type === "Summary" || this.changed === undefined) return super.set(key, metadata)
    const tracked = new Tracked(++this.nextSeries, metadata.type, metadata)
    const hooks = metadata.hooks
    const mark = () => {
      if (tracked.changed) return
      tracked.changed = true
      this.dirty = true
      this.changed.push(tracked)
    }
    mark()
    return super.set(key, {
      ...metadata,
      hooks: {
        get: hooks.get,
        update: (input: unknown, context: Context.Context<never>) => {
          hooks.update(input, context)
          mark()
        },
        modify: (input: unknown, context: Context.Context<never>) => {
          hooks.modify(input, context)
          mark()
        }
      }
    })
  }

  /** What changed since the last call, as a Metrics message; undefined when nothing did. */
  take(context: Context.Context<never>): MetricsMessage | undefined {
    const changed = this.changed
    this.changed = []
    this.dirty = false
    const updates: Array<MetricUpdate> = []
    for (const tracked of changed) {
      tracked.changed = false
      let value: MetricValue | undefined
      try {
        value = this.seriesValue(tracked, context)
      } catch {
        // A series registered with hooks of its own whose state is not what its type says: not forwarded.
        continue
      }
      if (value === undefined) continue
      if (tracked.described) {
        updates.push([tracked.series, value])
      } else {
        tracked.described = true
        const { attributes, description, id } = tracked.metadata
        updates.push([tracked.series, value, tracked.type, id, description ?? 0, attributes ?? {}])
      }
    }
    return updates.length === 0 ? undefined : Message.metrics(updates)
  }

  /** The series' increase since it last travelled (its value, for a gauge); undefined when there is none to send. */
  private seriesValue(tracked: Tracked, context: Context.Context<never>): MetricValue | undefined {
    const state = tracked.metadata.hooks.get(context)
    switch (tracked.type) {
      case "Counter": {
        const count = finite(Number(state.count))
        const increase = count - tracked.count
        tracked.count = count
        return increase === 0 && tracked.described ? undefined : increase
      }
      case "Gauge": {
        const value = Number(state.value)
        return Number.isFinite(value) ? value : undefined
      }
      case "Histogram": {
        const buckets = (state as Metric.HistogramState).buckets.filter(([boundary]) => Number.isFinite(boundary))
        const boundaries = buckets.map(([boundary]) => boundary)
        const increases = buckets.map(([, cumulated], i) => cumulated - (tracked.buckets[i] ?? 0))
        tracked.buckets = buckets.map(([, cumulated]) => cumulated)
        const count = state.count - tracked.histogramCount
        const sum = finite(state.sum) - tracked.sum
        tracked.histogramCount = state.count
        tracked.sum = finite(state.sum)
        if (count === 0 && tracked.described) return undefined
        return [boundaries, increases, count, sum, finite(state.min), finite(state.max)]
      }
      case "Frequency": {
        const words: Array<readonly [string, number]> = []
        for (const [word, count] of (state as Metric.FrequencyState).occurrences) {
          const increase = count - (tracked.words.get(word) ?? 0)
          if (increase === 0) continue
          tracked.words.set(word, count)
          words.push([word, increase])
        }
        return words.length === 0 && tracked.described ? undefined : words
      }
    }
  }
}

/**
 * Forks the fiber of task `task` with a worker's `services`, its id for the
 * log lines it makes, and its caller's minimum log level if not the pool's.
 *
 * @internal
 */
export const forkTask =
  (services: Context.Context<never>) =>
  <A, E>(effect: Effect.Effect<A, E>, task: number, logLevel: LogLevel.LogLevel | undefined): Fiber.Fiber<A, E> => {
    const context = Context.add(services, CurrentTask, task)
    return Effect.runForkWith(
      logLevel === undefined ? context : Context.add(context, References.MinimumLogLevel, logLevel)
    )(effect)
  }
