/**
 * The pool's own metrics, as Effect `Metric`s: tasks by outcome, wait and run
 * times, queue, in-flight, workers, worker exits, utilization. A task's
 * series go to its caller's registry; the gauges and the workers' exits to
 * that of the context the pool is built in.
 *
 * Nothing here runs per task beyond a few additions: each series keeps its
 * state in plain fields (series.ts), and the registry reads them only when
 * someone takes a snapshot. Gauges are read from the dispatcher and the
 * supervisor at that moment, never updated.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import { isPoolError, type PoolError } from "../../PoolError.ts"
import type { Cancel, PoolClock } from "../clock.ts"
import { type Entry, isPoolErrorReply } from "../processes/entry.ts"
import type { WorkerExitReason } from "../processes/killReason.ts"
import { ExitKind, FromWorker } from "../wire/protocol.ts"
import type { PoolEvents } from "./events.ts"
import { Counter, Histogram, install, kept } from "./series.ts"

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
    case "LimitExceeded":
      return Outcome.crashed
    case "TaskTimeout":
      return Outcome.timeout
    case "SerializationError":
      return Outcome.serialization
    case "TaskNotServed":
      return Outcome.notServed
    default:
      // QueueFull, PoolClosed, WorkerStartError for a pool that cannot start workers, and StorageUnreachable
      // through the cluster: the pool could not take it (or, for the last, could not see it through).
      return Outcome.rejected
  }
}

/** The outcome of a task's `Exit` as its caller sees it, decoded. */
const exitOutcome = (exit: Exit.Exit<unknown, unknown>): number => {
  if (Exit.isSuccess(exit)) return Outcome.success
  if (Cause.hasInterruptsOnly(exit.cause)) return Outcome.interrupted
  const failure = exit.cause.reasons.find(Cause.isFailReason)
  if (failure === undefined) return Outcome.defect
  return isPoolError(failure.error) ? errorOutcome(failure.error) : Outcome.failure
}

/** The outcome of an item's or a stream's end still encoded: a worker's `[kind, value]`, or a pool error. */
const rawOutcome = (ended: ReadonlyArray<unknown> | PoolError): number =>
  Array.isArray(ended) ? kindOutcome(ended[0]) : errorOutcome(ended as PoolError)

/** `process_pool_tasks_total`, without its attributes. */
const tasksTotal = () =>
  Metric.counter("process_pool_tasks_total", {
    description: "Tasks ended, by task and outcome; the items of a map count one by one"
  })

/**
 * `process_pool_tasks_total` for a backend without a dispatcher to count it
 * (the cluster): each task, each item of a chunk and each stream, counted
 * by how it ended, and the payloads the service refused.
 *
 * @internal
 */
export const makeOutcomeCounter = (context: Context.Context<never>, pool: string) => {
  const total = tasksTotal()
  const series = new Map<string, Array<Counter | undefined>>()
  const counterOf = (task: string, outcome: number): Counter => {
    let counters = series.get(task)
    if (counters === undefined) series.set(task, counters = [])
    return counters[outcome] ??= Counter.install(
      Metric.withAttributes(total, { pool, task, outcome: outcomes[outcome] }),
      context
    )
  }
  return {
    /** A call's decoded `Exit`, or a chunk's pool error for each of its `n` items. */
    exit: (task: string, exit: Exit.Exit<unknown, unknown>, n = 1): void => {
      counterOf(task, exitOutcome(exit)).count += n
    },
    /** An item's or a stream's end, still encoded; a stream's success is `undefined`. */
    raw: (task: string, ended: ReadonlyArray<unknown> | PoolError | undefined): void => {
      counterOf(task, ended === undefined ? Outcome.success : rawOutcome(ended)).count++
    },
    /** Payloads the service refused before anything was sent. */
    unsent: (task: string, items: number): void => {
      counterOf(task, Outcome.serialization).count += items
    }
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
// The series of each task
// ---------------------------------------------------------------------------

/** The series of one task tag in one registry: its tasks by outcome, their wait and run times. */
class TaskSeries {
  readonly outcomes: ReadonlyArray<Counter>
  readonly wait: Histogram
  readonly run: Histogram
  constructor(outcomes: ReadonlyArray<Counter>, wait: Histogram, run: Histogram) {
    this.outcomes = outcomes
    this.wait = wait
    this.run = run
  }

  /**
   * Counts `n` items of `entry` with outcome `outcome` that ran for `millis`
   * each. They waited from the submit to the start of their part: a chunk's
   * later items wait for its earlier ones.
   */
  count(outcome: number, n: number, entry: Entry, millis: number): void {
    if (n <= 0) return
    this.outcomes[outcome].count += n
    if (!entry.started) return
    this.wait.observe((entry.partAt - entry.submittedAt) / 1000, n)
    this.run.observe(millis / 1000, n)
  }

  /** Counts the items of a batch's part or answer, each by its own `ExitKind`. */
  countExits(entry: Entry, items: ReadonlyArray<unknown>, millis: number): void {
    for (const item of items) this.count(kindOutcome((item as ReadonlyArray<unknown>)[0]), 1, entry, millis)
  }
}

/**
 * Finds the series of a task of pool `pool` by its tag and its caller's
 * context: the series go to the caller's registry, with the caller's metric
 * attributes, or to those of `context` when the task has no caller's context.
 */
const makeTaskSeries = (
  context: Context.Context<never>,
  pool: string
): (task: string, caller: Context.Context<never> | undefined) => TaskSeries => {
  const total = tasksTotal()
  const waitSeconds = Metric.histogram("process_pool_task_wait_seconds", {
    description: "Seconds from submit to the start in a worker",
    boundaries: secondsBoundaries
  })
  const runSeconds = Metric.histogram("process_pool_task_run_seconds", {
    description: "Seconds from the start in a worker to the outcome",
    boundaries: secondsBoundaries
  })

  /** The series of each task tag in one context: the pool's, or a caller's with another registry or attributes. */
  const seriesIn = (context: Context.Context<never>) => {
    const tasks = new Map<string, TaskSeries>()
    return (task: string): TaskSeries => {
      let series = tasks.get(task)
      if (series === undefined) {
        series = kept(
          context,
          JSON.stringify(["task", pool, task]),
          () =>
            new TaskSeries(
              outcomes.map((outcome) =>
                Counter.install(Metric.withAttributes(total, { pool, task, outcome }), context)
              ),
              Histogram.install(Metric.withAttributes(waitSeconds, { pool, task }), secondsBoundaries, context),
              Histogram.install(Metric.withAttributes(runSeconds, { pool, task }), secondsBoundaries, context)
            )
        )
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

  // Callers mostly share one context, and tasks of one tag come in runs: the last ones are kept at hand, so that
  // a task costs two comparisons to find its series.
  let lastCaller: Context.Context<never> | undefined
  let lastCallerSeries = poolSeries
  let lastTask = ""
  let lastSeries: TaskSeries | undefined
  return (task, caller) => {
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
}

// ---------------------------------------------------------------------------
// Gauges
// ---------------------------------------------------------------------------

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

/** How often utilization is sampled, and over how many samples it is measured: the last second. */
const sampleEvery = 250
const samplesKept = 4

/**
 * A pool's utilization: the time its workers held work over the time they
 * were alive, over about the last second. Sampling starts with the first
 * worker: before it, the pool is still being built.
 */
class Utilization {
  private readonly clock: PoolClock
  /** How long the workers have held work in all, up to `now`. */
  private readonly busyTime: (now: number) => number
  private readyWorkers = 0
  /** How long the ready workers were alive in all, up to `capacityAt`. */
  private capacity = 0
  private capacityAt: number
  private readonly samples: Array<readonly [busy: number, capacity: number]> = [[0, 0]]
  private sampling: Cancel | undefined = undefined
  private stopped = false

  constructor(clock: PoolClock, busyTime: (now: number) => number) {
    this.clock = clock
    this.busyTime = busyTime
    this.capacityAt = clock.now()
  }

  private capacityTime(now: number): number {
    return this.capacity + this.readyWorkers * (now - this.capacityAt)
  }

  private moveCapacity(delta: number): void {
    const now = this.clock.now()
    this.capacity = this.capacityTime(now)
    this.capacityAt = now
    this.readyWorkers += delta
  }

  workerStarted(): void {
    if (!this.stopped) {
      this.sampling ??= this.clock.every(sampleEvery, () => {
        const now = this.clock.now()
        this.samples.push([this.busyTime(now), this.capacityTime(now)])
        if (this.samples.length > samplesKept) this.samples.shift()
      })
    }
    this.moveCapacity(1)
  }

  workerExited(): void {
    this.moveCapacity(-1)
  }

  /** The busy fraction now, for the gauge. */
  readonly value = (): number => {
    const now = this.clock.now()
    const [busy, held] = this.samples[0]
    const alive = this.capacityTime(now) - held
    return alive <= 0 ? 0 : Math.min(1, (this.busyTime(now) - busy) / alive)
  }

  /** Stops the sampling, for good. */
  stop(): void {
    this.stopped = true
    this.sampling?.()
  }
}

// ---------------------------------------------------------------------------
// The pool's metrics
// ---------------------------------------------------------------------------

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
  const seriesOf = makeTaskSeries(context, pool)

  const exitsTotal = Metric.counter("process_pool_worker_exits_total", {
    description: "Worker processes ended, by reason"
  })
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
  for (const reason of ["crashed", "runaway", "hung", "limit", "protocol", "recycled", "idle", "shutdown"] as const) {
    exitCounter(reason)
  }

  const utilization = new Utilization(clock, gauges.busyTime)
  const left: Array<() => void> = []
  const stop = () => {
    utilization.stop()
    for (const leave of left) leave()
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
  join("process_pool_utilization", "Busy fraction of the workers over the last second", utilization.value, true)

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
        return series.count(outcome, 1, entry, now - entry.startedAt)
      }
      const left = entry.batchSize - entry.received
      if (left <= 0) return
      if (interrupted) return series.count(Outcome.interrupted, left, entry, (now - entry.partAt) / left)
      if (isPoolErrorReply(reply)) {
        // A crash fails the items the worker may have run; those after them run again, and count then.
        const outcome = errorOutcome(reply)
        const n = outcome === Outcome.crashed ? Math.min(left, entry.window) : left
        return series.count(outcome, n, entry, (now - entry.partAt) / n)
      }
      switch (reply[0]) {
        case FromWorker.BatchValues:
          return series.count(Outcome.success, left, entry, (now - entry.partAt) / left)
        case FromWorker.BatchExit:
          return series.countExits(entry, reply[2], (now - entry.partAt) / left)
        default:
          // The chunk as a whole: interrupted, not served.
          return series.count(kindOutcome(reply[2]), left, entry, (now - entry.partAt) / left)
      }
    },
    part: (entry, exits, items, now) => {
      const series = seriesOf(entry.tag, entry.caller)
      const millis = (now - entry.partAt) / items.length
      if (exits) series.countExits(entry, items, millis)
      else series.count(Outcome.success, items.length, entry, millis)
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
      utilization.workerStarted()
    },
    workerExited: (_, reason) => {
      if (reason === "start_failed") return
      utilization.workerExited()
      exitCounter(reason).count++
    }
  }
  return { events, stop }
}
