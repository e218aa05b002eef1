/**
 * The workers' own metrics, merged into the registry of the context the pool
 * is built in. A worker sends its series as they change (`Metrics`, see
 * wire/protocol.ts), describing each the first time it travels; the updates
 * of every worker to a series of one name, type and attributes go to one
 * series here.
 *
 * @internal
 */
import type * as Context from "effect/Context"
import * as Metric from "effect/Metric"
import {
  type MetricsMessage,
  type MetricType,
  type MetricUpdate,
  type MetricValue,
  workerPidKey
} from "../wire/protocol.ts"
import type { PoolEvents } from "./events.ts"
import { Counter, Histogram, install, keptIn } from "./series.ts"

/** One merged series: every worker's updates to the series of this name, type and attributes. */
class Merged {
  readonly type: MetricType
  readonly remove: () => void
  /** Whether the series is one worker's own: it carries `process_pool.worker_pid`. */
  readonly perWorker: boolean
  readonly counter: Counter | undefined
  readonly histogram: Histogram | undefined
  readonly occurrences: Map<string, number> | undefined
  /** For a gauge: the parent's own value, and each live worker's. */
  own = 0
  readonly gauges: Map<number, number> | undefined

  constructor(
    context: Context.Context<never>,
    type: MetricType,
    name: string,
    description: string | undefined,
    attributes: Readonly<Record<string, string>>,
    boundaries: ReadonlyArray<number>
  ) {
    this.type = type
    this.perWorker = workerPidKey in attributes
    const options = { description, attributes }
    switch (type) {
      case "Counter": {
        this.counter = Counter.install(Metric.counter(name, options), context)
        this.remove = this.counter.remove
        break
      }
      case "Histogram": {
        this.histogram = Histogram.install(Metric.histogram(name, { ...options, boundaries }), boundaries, context)
        this.remove = this.histogram.remove
        break
      }
      case "Frequency": {
        const occurrences = new Map<string, number>()
        const installed = install(Metric.frequency(name, options), context, {
          get: () => ({ occurrences }),
          update: (word: string) => void occurrences.set(word, (occurrences.get(word) ?? 0) + 1),
          modify: (word: string) => void occurrences.set(word, (occurrences.get(word) ?? 0) + 1)
        })
        for (const [word, n] of installed.previous.occurrences) occurrences.set(word, n)
        this.occurrences = occurrences
        this.remove = installed.remove
        break
      }
      case "Gauge": {
        const gauges = new Map<number, number>()
        const installed = install(Metric.gauge(name, options), context, {
          get: () => {
            let value = this.own
            for (const worker of gauges.values()) value += worker
            return { value }
          },
          update: (value: number) => {
            this.own = Number(value)
          },
          modify: (value: number) => {
            this.own += Number(value)
          }
        })
        this.own = Number(installed.previous.value)
        this.gauges = gauges
        this.remove = installed.remove
        break
      }
    }
  }

  /** Applies one worker's update; false when it does not fit this series. */
  apply(pid: number, value: MetricValue): boolean {
    switch (this.type) {
      case "Counter":
        if (typeof value !== "number") return false
        this.counter!.count += value
        return true
      case "Gauge":
        if (typeof value !== "number") return false
        this.gauges!.set(pid, value)
        return true
      case "Histogram": {
        if (typeof value === "number" || value.length !== 6 || !Array.isArray(value[0])) return false
        const [boundaries, buckets, count, sum, min, max] = value as readonly [
          ReadonlyArray<number>,
          ReadonlyArray<number>,
          number,
          number,
          number,
          number
        ]
        return this.histogram!.merge(boundaries, buckets, count, sum, min, max)
      }
      case "Frequency": {
        if (typeof value === "number") return false
        for (const word of value) {
          if (!Array.isArray(word) || typeof word[0] !== "string") return false
          const [key, n] = word as unknown as readonly [string, number]
          this.occurrences!.set(key, (this.occurrences!.get(key) ?? 0) + n)
        }
        return true
      }
    }
  }

  /** Worker `pid` is gone: its share of a gauge goes with it. */
  forget(pid: number): void {
    this.gauges?.delete(pid)
  }
}

/**
 * Merges the metrics each worker sends into the registry of `context`:
 * counters, histograms and frequencies add up across workers, and keep what
 * a worker counted after it is gone; a gauge is the sum of the live workers'
 * values. A series with the attribute `process_pool.worker_pid` is one
 * worker's own, and leaves the registry when its worker exits.
 *
 * @internal
 */
export const makeWorkerMetrics = (context: Context.Context<never>): PoolEvents => {
  // Shared with the other pools that count into this registry: their workers' series add up too.
  const merged = keptIn(context) as Map<string, Merged>
  const workers = new Map<number, Map<number, Merged>>()

  const define = (pid: number, update: MetricUpdate): Merged | string => {
    const [, value, type, name, description, wireAttributes] = update as Extract<MetricUpdate, { length: 6 }>
    const attributes = workerPidKey in wireAttributes
      ? { ...wireAttributes, [workerPidKey]: String(pid) }
      : wireAttributes
    const key = JSON.stringify([
      "worker",
      type,
      name,
      Object.entries(attributes).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    ])
    let series = merged.get(key)
    if (series === undefined) {
      const boundaries = type === "Histogram" && Array.isArray(value) ? (value[0] as ReadonlyArray<number>) : []
      series = new Merged(context, type, name, description === 0 ? undefined : description, attributes, boundaries)
      merged.set(key, series)
      if (series.perWorker) {
        const remove = series.remove
        ;(series as { remove: () => void }).remove = () => {
          merged.delete(key)
          remove()
        }
      }
    } else if (series.type !== type) {
      return `metric "${name}" is a ${type} in a worker and a ${series.type} already`
    }
    return series
  }

  return {
    metrics: (pid: number, message: MetricsMessage) => {
      let own = workers.get(pid)
      if (own === undefined) workers.set(pid, own = new Map())
      for (const update of message[1]) {
        let series: Merged | string | undefined = own.get(update[0])
        if (update.length === 6) {
          if (series === undefined) {
            series = define(pid, update)
            if (typeof series === "string") return series
            own.set(update[0], series)
          }
        } else if (series === undefined) {
          return `a metric update for series ${update[0]}, which the worker never described`
        }
        if (!series.apply(pid, update[1])) return `a metric update that does not fit its series (${series.type})`
      }
      return undefined
    },
    workerExited: (pid: number) => {
      const own = workers.get(pid)
      if (own === undefined) return
      workers.delete(pid)
      for (const series of own.values()) {
        if (series.perWorker) series.remove()
        else series.forget(pid)
      }
    }
  }
}
