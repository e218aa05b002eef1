/**
 * Series whose state lives in plain fields here rather than in Effect's
 * metric registry: a counter and a histogram, and the hooks through which the
 * registry reads them only when someone takes a snapshot, so that counting
 * costs an addition. The pool's metrics and the workers' merged ones are
 * made of them.
 *
 * A series installed here takes over the state of the series of the same name
 * and attributes already in the registry (a former pool of the same name), so
 * counts add up as they do with Effect's own metrics; updates made through
 * Effect's API to such a series still land in it.
 *
 * @internal
 */
import * as Context from "effect/Context"
import * as Metric from "effect/Metric"

/**
 * Puts `hooks` in the registry of `context` for `metric`'s series, in place of
 * what is there. Returns the state already there, for the new series to take
 * over, and a remove.
 *
 * @internal
 */
export const install = <S>(
  metric: Metric.Metric<any, S>,
  context: Context.Context<never>,
  hooks: Metric.Metric.Hooks<any, S>
): { readonly previous: S; readonly remove: () => void } => {
  const previous = metric.valueUnsafe(context)
  const registration = Metric.registerUnsafe(metric, context, hooks)
  // Registering keeps only `get`: the update hooks go in too, so that Effect's own updates reach this state.
  const registry = Context.get(context, Metric.MetricRegistry)
  for (const [key, metadata] of registry) {
    if (metadata.hooks.get === hooks.get) {
      registry.set(key, { ...metadata, hooks })
      return {
        previous,
        remove: () => {
          if (registry.get(key)?.hooks === hooks) registry.delete(key)
        }
      }
    }
  }
  return { previous, remove: registration.remove }
}

/** A counter series: its count, read by the registry. @internal */
export class Counter {
  count = 0
  /** Takes the series out of the registry. */
  remove: () => void = () => {}
  readonly hooks: Metric.Metric.Hooks<number, Metric.CounterState<number>> = {
    get: () => ({ count: this.count, incremental: false }),
    update: (n) => {
      this.count += Number(n)
    },
    modify: (n) => {
      this.count += Number(n)
    }
  }
  static install(metric: Metric.Counter<number>, context: Context.Context<never>): Counter {
    const counter = new Counter()
    const installed = install(metric, context, counter.hooks)
    counter.count = Number(installed.previous.count)
    counter.remove = installed.remove
    return counter
  }
}

/** A histogram series: observations per bucket, their count, sum, least and greatest. @internal */
export class Histogram {
  readonly boundaries: ReadonlyArray<number>
  /** Observations per bucket, not cumulative; the last bucket is above every boundary. */
  readonly counts: Array<number>
  count = 0
  sum = 0
  /** Takes the series out of the registry. */
  remove: () => void = () => {}
  min = Number.MAX_VALUE
  max = -Number.MAX_VALUE
  constructor(boundaries: ReadonlyArray<number>) {
    this.boundaries = boundaries
    this.counts = new Array(boundaries.length + 1).fill(0)
  }
  /** Records `value`, `n` times. */
  observe(value: number, n: number): void {
    const boundaries = this.boundaries
    let low = 0
    let high = boundaries.length
    while (low < high) {
      const mid = (low + high) >> 1
      if (value <= boundaries[mid]) high = mid
      else low = mid + 1
    }
    this.counts[low] += n
    this.count += n
    this.sum += value * n
    if (value < this.min) this.min = value
    if (value > this.max) this.max = value
  }
  readonly hooks: Metric.Metric.Hooks<number, Metric.HistogramState> = {
    get: () => {
      let cumulated = 0
      const buckets: Array<[number, number]> = []
      for (let i = 0; i < this.boundaries.length; i++) {
        cumulated += this.counts[i]
        buckets.push([this.boundaries[i], cumulated])
      }
      return { buckets, count: this.count, min: this.min, max: this.max, sum: this.sum }
    },
    update: (value) => this.observe(value, 1),
    modify: (value) => this.observe(value, 1)
  }
  /** Adds a state: a former series' or a worker's increase. */
  merge(
    boundaries: ReadonlyArray<number>,
    cumulative: ReadonlyArray<number>,
    count: number,
    sum: number,
    min: number,
    max: number
  ): boolean {
    if (boundaries.length !== this.boundaries.length || boundaries.some((b, i) => b !== this.boundaries[i])) {
      return false
    }
    let before = 0
    let total = 0
    for (let i = 0; i < cumulative.length; i++) {
      const inBucket = cumulative[i] - before
      before = cumulative[i]
      this.counts[i] += inBucket
      total += inBucket
    }
    this.counts[this.counts.length - 1] += count - total
    this.count += count
    this.sum += sum
    if (count > 0) {
      if (min < this.min) this.min = min
      if (max > this.max) this.max = max
    }
    return true
  }
  static install(
    metric: Metric.Histogram<number>,
    boundaries: ReadonlyArray<number>,
    context: Context.Context<never>
  ): Histogram {
    const histogram = new Histogram(boundaries)
    const { previous, remove } = install(metric, context, histogram.hooks)
    histogram.remove = remove
    const finite = previous.buckets.filter(([b]) => Number.isFinite(b))
    histogram.merge(
      finite.map(([b]) => b),
      finite.map(([, c]) => c),
      previous.count,
      previous.sum,
      previous.min,
      previous.max
    )
    return histogram
  }
}

const seriesKept = new WeakMap<object, WeakMap<object, Map<string, unknown>>>()

/**
 * The series of the registry of `context`, with its attributes, that the
 * pools keep, by a key of their own. Pools that count into one registry share
 * them: two pools of one name add up in one series, as two fibers updating
 * one of Effect's metrics would.
 *
 * @internal
 */
export const keptIn = (context: Context.Context<never>): Map<string, unknown> => {
  const registry = Context.get(context, Metric.MetricRegistry)
  const attributes = Context.get(context, Metric.CurrentMetricAttributes)
  let byAttributes = seriesKept.get(registry)
  if (byAttributes === undefined) seriesKept.set(registry, byAttributes = new WeakMap())
  let kept = byAttributes.get(attributes)
  if (kept === undefined) byAttributes.set(attributes, kept = new Map())
  return kept
}

/** The series kept under `key` in the registry of `context`, made by `make` the first time. @internal */
export const kept = <S>(context: Context.Context<never>, key: string, make: () => S): S => {
  const series = keptIn(context)
  let found = series.get(key) as S | undefined
  if (found === undefined) series.set(key, found = make())
  return found
}
