/**
 * The pool's metrics, as Effect `Metric`s in the registry of the context the
 * pool is built in: tasks by outcome, wait and run times, queue, in-flight,
 * workers, worker exits, utilization; and the workers' own metrics, merged.
 *
 * Nothing here runs per task beyond a few additions: each series keeps its
 * state in plain fields of the pool, and the registry reads them (through
 * hooks this module installs) only when someone takes a snapshot. Gauges are
 * read from the dispatcher and the supervisor at that moment, never updated.
 *
 * A series installed here takes over the state of the series of the same name
 * and attributes already in the registry (a former pool of the same name), so
 * counts add up as they do with Effect's own metrics; updates made through
 * Effect's API to such a series still land in it.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import { isPoolError, type PoolError } from "../../PoolError.ts"
import type { PoolClock } from "../clock.ts"
import { type Entry, isPoolErrorReply } from "../processes/entry.ts"
import type { WorkerExitReason } from "../processes/killReason.ts"
import {
  ExitKind,
  FromWorker,
  type MetricsMessage,
  type MetricType,
  type MetricUpdate,
  type MetricValue,
  workerPidKey
} from "../wire/protocol.ts"
import type { PoolEvents } from "./events.ts"

/** The outcomes of `process_pool_tasks_total`, in the order of their index. @internal */
export const outcomes = [
  "success",
  "failure",
  "defect",
  "crashed",
  "timeout",
  "interrupted",
  "rejected",
  "serialization",
  "not_served"
] as const

const Outcome = {
  success: 0,
  failure: 1,
  defect: 2,
  crashed: 3,
  timeout: 4,
  interrupted: 5,
  rejected: 6,
  serialization: 7,
  notServed: 8
} as const

/** The outcome of an item's or task's `ExitKind`. */
const kindOutcome = (kind: unknown): number => {
  switch (kind) {
    case ExitKind.Success:
      return Outcome.success
    case ExitKind.Failure:
      return Outcome.failure
    case ExitKind.Interrupted:
      return Outcome.interrupted
    case ExitKind.PayloadInvalid:
    case ExitKind.ResultInvalid:
      return Outcome.serialization
    case ExitKind.NotServed:
      return Outcome.notServed
    default:
      return Outcome.defect
  }
}

/** The outcome of a `PoolError` that ended a task. */
const errorOutcome = (error: PoolError): number => {
  switch (error._tag) {
    case "WorkerCrashed":
      return Outcome.crashed
    case "TaskTimeout":
      return Outcome.timeout
    case "SerializationError":
      return Outcome.serialization
    case "TaskNotServed":
      return Outcome.notServed
    default:
      // QueueFull, PoolClosed, and WorkerStartError for a pool that cannot start workers: the pool refused it.
      return Outcome.rejected
  }
}

/** The outcome of a task's or item's `Exit`, as the caller sees it. */
const exitOutcome = (exit: Exit.Exit<unknown, unknown>): number => {
  if (Exit.isSuccess(exit)) return Outcome.success
  if (Cause.hasInterruptsOnly(exit.cause)) return Outcome.interrupted
  const failure = exit.cause.reasons.find(Cause.isFailReason)
  if (failure === undefined) return Outcome.defect
  return isPoolError(failure.error) ? errorOutcome(failure.error) : Outcome.failure
}

/**
 * `process_pool_tasks_total` for a backend without a dispatcher to count it
 * (the cluster): each task, or each item of a chunk, counted by the outcome
 * of its `Exit` at the caller.
 *
 * @internal
 */
export const makeOutcomeCounter = (context: Context.Context<never>, pool: string) => {
  const tasksTotal = Metric.counter("process_pool_tasks_total", {
    description: "Tasks ended, by task and outcome; the items of a map count one by one"
  })
  const series = new Map<string, Array<Counter | undefined>>()
  return (task: string, exit: Exit.Exit<unknown, unknown>, n = 1): void => {
    let counters = series.get(task)
    if (counters === undefined) series.set(task, counters = [])
    const outcome = exitOutcome(exit)
    const counter = counters[outcome] ??= Counter.install(
      Metric.withAttributes(tasksTotal, { pool, task, outcome: outcomes[outcome] }),
      context
    )
    counter.count += n
  }
}

/**
 * Boundaries in seconds of the wait and run histograms: 1, 2, 5 in every
 * decade from 5 µs to 100 s, so that both a 20 µs task and a 10 s one fall
 * in a bucket of their size.
 *
 * @internal
 */
export const secondsBoundaries: ReadonlyArray<number> = (() => {
  const boundaries = [5e-6]
  for (let decade = 1e-5; decade <= 100; decade *= 10) {
    for (const step of [1, 2, 5]) {
      const boundary = Number((decade * step).toPrecision(1))
      if (boundary <= 100) boundaries.push(boundary)
    }
  }
  return boundaries
})()

// ---------------------------------------------------------------------------
// Series whose state lives here
// ---------------------------------------------------------------------------

/**
 * Puts `hooks` in the registry of `context` for `metric`'s series, in place of
 * what is there. Returns the state already there, for the new series to take
 * over, and a remove.
 */
const install = <S>(
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

class Counter {
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

class Histogram {
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

/**
 * The series of the registry of `context`, with its attributes, that this
 * module keeps, by a key of its own. Pools that count into one registry share
 * them: two pools of one name add up in one series, as two fibers updating
 * one of Effect's metrics would.
 */
const seriesKept = new WeakMap<object, WeakMap<object, Map<string, unknown>>>()
const keptIn = (context: Context.Context<never>): Map<string, unknown> => {
  const registry = Context.get(context, Metric.MetricRegistry)
  const attributes = Context.get(context, Metric.CurrentMetricAttributes)
  let byAttributes = seriesKept.get(registry)
  if (byAttributes === undefined) seriesKept.set(registry, byAttributes = new WeakMap())
  let kept = byAttributes.get(attributes)
  if (kept === undefined) byAttributes.set(attributes, kept = new Map())
  return kept
}
const kept = <S>(context: Context.Context<never>, key: string, make: () => S): S => {
  const series = keptIn(context)
  let found = series.get(key) as S | undefined
  if (found === undefined) series.set(key, found = make())
  return found
}

/** What one live pool gives a gauge: its value, and its weight in a mean. */
interface GaugeSource {
  readonly value: () => number
  readonly weight: () => number
}

/**
 * A gauge read from the live pools of one name when a snapshot is taken: the
 * sum of their values, or, for a fraction, their mean weighted by `weight`.
 * Returns the set of sources, which each pool joins and leaves.
 */
const sharedGauge = (
  context: Context.Context<never>,
  metric: Metric.Gauge<number>,
  key: string,
  mean: boolean
): Set<GaugeSource> =>
  kept(context, key, () => {
    const sources = new Set<GaugeSource>()
    const get = () => {
      let total = 0
      let weights = 0
      for (const source of sources) {
        const weight = mean ? source.weight() : 1
        total += source.value() * weight
        weights += weight
      }
      return { value: mean ? (weights > 0 ? total / weights : 0) : total }
    }
    install(metric, context, { get, update: () => {}, modify: () => {} })
    return sources
  })

// ---------------------------------------------------------------------------
// The pool's own metrics
// ---------------------------------------------------------------------------

/** The series of one task tag. */
interface TaskSeries {
  readonly outcomes: ReadonlyArray<Counter>
  readonly wait: Histogram
  readonly run: Histogram
}

/** What the pool's gauges read, when a snapshot is taken. @internal */
export interface PoolGauges {
  /** Tasks waiting for a worker. */
  readonly queued: () => number
  /** Tasks sent to workers and not yet answered. */
  readonly inflight: () => number
  /** How long the workers have held work in all, up to `now`: see `Dispatcher.busyTime`. */
  readonly busyTime: (now: number) => number
  /** Worker processes alive now. */
  readonly liveWorkers: () => number
}

/** How often utilization is sampled, and over how many samples it is measured: the last second. */
const sampleEvery = 250
const samplesKept = 4

/**
 * The metrics of one pool named `pool`: the events that feed them, and a
 * stop for the sampling timer. A task's metrics go to its caller's registry,
 * with its caller's metric attributes; the gauges and the workers' exits to
 * those of `context`, where the pool is built.
 *
 * @internal
 */
export const makePoolMetrics = (
  context: Context.Context<never>,
  pool: string,
  gauges: PoolGauges,
  clock: PoolClock
): { readonly events: PoolEvents; readonly stop: () => void } => {
  const tasksTotal = Metric.counter("process_pool_tasks_total", {
    description: "Tasks ended, by task and outcome; the items of a map count one by one"
  })
  const waitSeconds = Metric.histogram("process_pool_task_wait_seconds", {
    description: "Seconds from submit to the start in a worker",
    boundaries: secondsBoundaries
  })
  const runSeconds = Metric.histogram("process_pool_task_run_seconds", {
    description: "Seconds from the start in a worker to the outcome",
    boundaries: secondsBoundaries
  })
  const exitsTotal = Metric.counter("process_pool_worker_exits_total", {
    description: "Worker processes ended, by reason"
  })

  /** The series of each task tag in one context: the pool's, or a caller's with another registry or attributes. */
  const seriesIn = (context: Context.Context<never>) => {
    const tasks = new Map<string, TaskSeries>()
    return (task: string): TaskSeries => {
      let series = tasks.get(task)
      if (series === undefined) {
        series = kept(context, JSON.stringify(["task", pool, task]), () => ({
          outcomes: outcomes.map((outcome) =>
            Counter.install(Metric.withAttributes(tasksTotal, { pool, task, outcome }), context)
          ),
          wait: Histogram.install(Metric.withAttributes(waitSeconds, { pool, task }), secondsBoundaries, context),
          run: Histogram.install(Metric.withAttributes(runSeconds, { pool, task }), secondsBoundaries, context)
        }))
        tasks.set(task, series)
      }
      return series
    }
  }
  const poolSeries = seriesIn(context)
  const poolRegistry = Context.get(context, Metric.MetricRegistry)
  const poolAttributes = Context.get(context, Metric.CurrentMetricAttributes)
  /** A caller's series, by its registry and its metric attributes. */
  const callers = new WeakMap<object, WeakMap<object, (task: string) => TaskSeries>>()
  const callerSeries = (caller: Context.Context<never>): (task: string) => TaskSeries => {
    const registry = Context.get(caller, Metric.MetricRegistry)
    const attributes = Context.get(caller, Metric.CurrentMetricAttributes)
    if (registry === poolRegistry && attributes === poolAttributes) return poolSeries
    let byAttributes = callers.get(registry)
    if (byAttributes === undefined) callers.set(registry, byAttributes = new WeakMap())
    let series = byAttributes.get(attributes)
    if (series === undefined) byAttributes.set(attributes, series = seriesIn(caller))
    return series
  }

  // A task's metrics go to its caller's context. Callers mostly share one context, and tasks of one tag come in
  // runs: the last ones are kept at hand, so that a task costs two comparisons to find its series.
  let lastCaller: Context.Context<never> | undefined
  let lastCallerSeries = poolSeries
  let lastTask = ""
  let lastSeries: TaskSeries | undefined
  const seriesOf = (task: string, caller: Context.Context<never> | undefined): TaskSeries => {
    if (caller !== lastCaller) {
      lastCaller = caller
      const next = caller === undefined ? poolSeries : callerSeries(caller)
      if (next !== lastCallerSeries) lastSeries = undefined
      lastCallerSeries = next
    }
    if (task === lastTask && lastSeries !== undefined) return lastSeries
    lastTask = task
    return lastSeries = lastCallerSeries(task)
  }

  const exits = new Map<WorkerExitReason, Counter>()
  const exitCounter = (reason: WorkerExitReason): Counter => {
    let counter = exits.get(reason)
    if (counter === undefined) {
      counter = kept(
        context,
        JSON.stringify(["exit", pool, reason]),
        () => Counter.install(Metric.withAttributes(exitsTotal, { pool, reason }), context)
      )
      exits.set(reason, counter)
    }
    return counter
  }
  for (const reason of ["crashed", "runaway", "hung", "protocol", "recycled", "idle", "shutdown"] as const) {
    exitCounter(reason)
  }

  // Utilization: the time workers held work over the time they were alive, over about the last second.
  let readyWorkers = 0
  let capacity = 0
  let capacityAt = clock.now()
  const capacityTime = (now: number): number => capacity + readyWorkers * (now - capacityAt)
  const moveCapacity = (delta: number) => {
    const now = clock.now()
    capacity = capacityTime(now)
    capacityAt = now
    readyWorkers += delta
  }
  const samples: Array<readonly [busy: number, capacity: number]> = [[0, 0]]
  // Sampling starts with the first worker: before it, the pool is still being built.
  let sampling: (() => void) | undefined
  const startSampling = () => {
    sampling ??= clock.every(sampleEvery, () => {
      const now = clock.now()
      samples.push([gauges.busyTime(now), capacityTime(now)])
      if (samples.length > samplesKept) samples.shift()
    })
  }
  let stopped = false
  const left: Array<() => void> = []
  const stop = () => {
    stopped = true
    sampling?.()
    for (const leave of left) leave()
  }
  const utilization = (): number => {
    const now = clock.now()
    const [busy, held] = samples[0]
    const alive = capacityTime(now) - held
    return alive <= 0 ? 0 : Math.min(1, (gauges.busyTime(now) - busy) / alive)
  }

  // This pool's share of the gauges of its name, until it stops.
  const join = (name: string, description: string, value: () => number, mean = false) => {
    const sources = sharedGauge(
      context,
      Metric.gauge(name, { description, attributes: { pool } }),
      JSON.stringify(["gauge", pool, name]),
      mean
    )
    const source: GaugeSource = { value, weight: gauges.liveWorkers }
    sources.add(source)
    left.push(() => sources.delete(source))
  }
  join("process_pool_queue_size", "Tasks waiting for a worker", gauges.queued)
  join("process_pool_tasks_inflight", "Tasks sent to workers and not yet answered", gauges.inflight)
  join("process_pool_workers", "Live worker processes", gauges.liveWorkers)
  join("process_pool_utilization", "Busy fraction of the workers over the last second", utilization, true)

  /**
   * Counts `n` items of `entry` with outcome `outcome` that ran for `run` ms
   * each. They waited from the submit to the start of their part: a chunk's
   * later items wait for its earlier ones.
   */
  const count = (series: TaskSeries, outcome: number, n: number, entry: Entry, run: number): void => {
    if (n <= 0) return
    series.outcomes[outcome].count += n
    if (!entry.started) return
    series.wait.observe((entry.partAt - entry.submittedAt) / 1000, n)
    series.run.observe(run / 1000, n)
  }

  /** Counts the items of a batch's part or answer, each by its own `ExitKind`. */
  const countExits = (series: TaskSeries, entry: Entry, items: ReadonlyArray<unknown>, run: number): void => {
    for (const item of items) count(series, kindOutcome((item as ReadonlyArray<unknown>)[0]), 1, entry, run)
  }

  const events: PoolEvents = {
    settled: (entry, reply, now) => {
      const series = seriesOf(entry.tag, entry.caller)
      // A task its caller interrupted ends interrupted, even when its worker had to be killed for it.
      const interrupted = entry.interruptRequested && !entry.timedOut && !entry.endedByShutdown
      if (entry.batchSize === 0) {
        const outcome = interrupted
          ? Outcome.interrupted
          : isPoolErrorReply(reply)
          ? errorOutcome(reply)
          : kindOutcome(reply[2])
        return count(series, outcome, 1, entry, now - entry.startedAt)
      }
      const left = entry.batchSize - entry.received
      if (left <= 0) return
      if (interrupted) return count(series, Outcome.interrupted, left, entry, (now - entry.partAt) / left)
      if (isPoolErrorReply(reply)) {
        // A crash fails the items the worker may have run; those after them run again, and count then.
        const outcome = errorOutcome(reply)
        const n = outcome === Outcome.crashed ? Math.min(left, entry.window) : left
        return count(series, outcome, n, entry, (now - entry.partAt) / n)
      }
      switch (reply[0]) {
        case FromWorker.BatchValues:
          return count(series, Outcome.success, left, entry, (now - entry.partAt) / left)
        case FromWorker.BatchExit:
          return countExits(series, entry, reply[2], (now - entry.partAt) / left)
        default:
          // The chunk as a whole: interrupted, not served.
          return count(series, kindOutcome(reply[2]), left, entry, (now - entry.partAt) / left)
      }
    },
    part: (entry, exits, items, now) => {
      const series = seriesOf(entry.tag, entry.caller)
      const run = (now - entry.partAt) / items.length
      if (exits) countExits(series, entry, items, run)
      else count(series, Outcome.success, items.length, entry, run)
      entry.partAt = now
    },
    undecoded: (entry) => {
      const series = seriesOf(entry.tag, entry.caller)
      series.outcomes[Outcome.success].count--
      series.outcomes[Outcome.serialization].count++
    },
    unsent: (task, items, caller) => {
      seriesOf(task, caller).outcomes[Outcome.serialization].count += items
    },
    workerStarted: () => {
      if (!stopped) startSampling()
      moveCapacity(1)
    },
    workerExited: (_, reason) => {
      if (reason === "start_failed") return
      moveCapacity(-1)
      exitCounter(reason).count++
    }
  }
  return { events, stop }
}

// ---------------------------------------------------------------------------
// The workers' own metrics, merged
// ---------------------------------------------------------------------------

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
