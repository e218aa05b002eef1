/**
 * The pool's own metrics, read with `Metric.snapshot` after known workloads on
 * real processes: every outcome, the time histograms, the gauges, and the
 * workers' exits by reason.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { secondsBoundaries } from "../src/internal/telemetry/poolMetrics.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import * as Task from "../src/Task.ts"
import { BadResult, Sleep, Spin, Square, Unserved } from "./fixtures/tasks.ts"
import { count, fixture, gauge, isAlive, series, waitUntil } from "./helpers.ts"

const histogram = (snapshot: ReadonlyArray<Metric.Metric.Snapshot>, id: string, attributes: Record<string, string>) =>
  series(snapshot, id, attributes)?.state as Metric.HistogramState

const tasks = (pool: string, task: string, outcome: string) => ({ pool, task, outcome })

/** `Square` as a caller that expects text: the worker's numbers do not decode. */
const SquareAsText = Task.make("Square", { payload: Schema.Number, success: Schema.String })

/** A pool over the main fixture worker, quiet on stderr, in the current scope. */
const makePool = (options: Partial<ProcessPool.Options> = {}) =>
  ProcessPool.make({ worker: fixture("worker.ts"), size: 1, inheritStderr: false, ...options })

/** Runs `effect` with a registry of its own. */
const isolated = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.provideService(effect, Metric.MetricRegistry, new Map())

describe("metrics", () => {
  it.live("every outcome of single tasks, a kill -9 and a timeout included, and the gauges", () =>
    isolated(Effect.gen(function*() {
      const scope = yield* Scope.make()
      const pool = yield* Scope.provide(
        ProcessPool.make({
          worker: fixture("worker.ts"),
          size: 2,
          name: "outcomes",
          inheritStderr: false,
          interruptGrace: 300
        }),
        scope
      )
      let snapshot = yield* Metric.snapshot
      expect(gauge(snapshot, "process_pool_workers", { pool: "outcomes" })).toBe(2)
      expect(gauge(snapshot, "process_pool_queue_size", { pool: "outcomes" })).toBe(0)

      yield* Effect.forEach([1, 2, 3], (n) => pool.submit(Square, n))
      yield* Effect.exit(pool.submit(Square, -1))
      yield* Effect.exit(pool.submit(Square, 13))
      yield* Effect.exit(pool.submit(Unserved, 1))
      yield* Effect.exit(pool.submit(BadResult, 1))
      // A payload that does not encode never reaches the pool; a result the caller's Schema does not take.
      yield* Effect.exit(pool.submit(Square, "x" as unknown as number))
      yield* Effect.exit(pool.submit(SquareAsText, 3))
      // A timeout: the task stops in its worker.
      yield* Effect.exit(pool.submit(Sleep, { ms: 10_000 }, { timeout: 100 }))
      // An interruption by the caller.
      const sleeping = yield* Effect.forkChild(pool.submit(Sleep, { ms: 10_000 }))
      yield* waitUntil("a sleeping worker", Effect.map(pool.stats, (s) => s.running === 1))
      expect(gauge(yield* Metric.snapshot, "process_pool_tasks_inflight", { pool: "outcomes" })).toBe(1)
      yield* Fiber.interrupt(sleeping)
      // A kill -9.
      const spinning = yield* Effect.forkChild(pool.submit(Spin, 30_000))
      yield* waitUntil("a spinning worker", Effect.map(pool.stats, (s) => s.running === 1))
      const victim = (yield* pool.stats).workers.find((w) => w.busy)!.pid
      process.kill(victim, "SIGKILL")
      assert(Exit.isFailure(yield* Fiber.await(spinning)))
      yield* waitUntil("the replacement", Effect.map(pool.stats, (s) => s.workers.length === 2))

      snapshot = yield* Metric.snapshot
      expect(count(snapshot, "process_pool_tasks_total", tasks("outcomes", "Square", "success"))).toBe(3)
      expect(count(snapshot, "process_pool_tasks_total", tasks("outcomes", "Square", "failure"))).toBe(1)
      expect(count(snapshot, "process_pool_tasks_total", tasks("outcomes", "Square", "defect"))).toBe(1)
      expect(count(snapshot, "process_pool_tasks_total", tasks("outcomes", "Unserved", "not_served"))).toBe(1)
      expect(count(snapshot, "process_pool_tasks_total", tasks("outcomes", "BadResult", "serialization"))).toBe(1)
      expect(count(snapshot, "process_pool_tasks_total", tasks("outcomes", "Square", "serialization"))).toBe(2)
      expect(count(snapshot, "process_pool_tasks_total", tasks("outcomes", "Sleep", "timeout"))).toBe(1)
      expect(count(snapshot, "process_pool_tasks_total", tasks("outcomes", "Sleep", "interrupted"))).toBe(1)
      expect(count(snapshot, "process_pool_tasks_total", tasks("outcomes", "Spin", "crashed"))).toBe(1)
      expect(count(snapshot, "process_pool_worker_exits_total", { pool: "outcomes", reason: "crashed" })).toBe(1)
      expect(count(snapshot, "process_pool_worker_exits_total", { pool: "outcomes", reason: "runaway" })).toBe(0)
      expect(gauge(snapshot, "process_pool_workers", { pool: "outcomes" })).toBe(2)
      expect(gauge(snapshot, "process_pool_tasks_inflight", { pool: "outcomes" })).toBe(0)
      const utilization = gauge(snapshot, "process_pool_utilization", { pool: "outcomes" })
      expect(utilization).toBeGreaterThanOrEqual(0)
      expect(utilization).toBeLessThanOrEqual(1)

      // Every task that started has one wait and one run time; the buckets are the documented ones.
      const wait = histogram(snapshot, "process_pool_task_wait_seconds", { pool: "outcomes", task: "Square" })
      const run = histogram(snapshot, "process_pool_task_run_seconds", { pool: "outcomes", task: "Square" })
      expect(wait.count).toBe(6)
      expect(run.count).toBe(6)
      expect(run.buckets.map(([boundary]) => boundary)).toEqual(secondsBoundaries)
      expect(histogram(snapshot, "process_pool_task_run_seconds", { pool: "outcomes", task: "Sleep" }).max)
        .toBeGreaterThanOrEqual(0.1)

      // After the pool closes: a rejected task, and the workers' exits by shutdown.
      const pids = (yield* pool.stats).workers.map((w) => w.pid)
      yield* Scope.close(scope, Exit.void)
      yield* Effect.exit(pool.submit(Square, 4))
      snapshot = yield* Metric.snapshot
      expect(count(snapshot, "process_pool_tasks_total", tasks("outcomes", "Square", "rejected"))).toBe(1)
      expect(count(snapshot, "process_pool_worker_exits_total", { pool: "outcomes", reason: "shutdown" })).toBe(2)
      expect(gauge(snapshot, "process_pool_workers", { pool: "outcomes" })).toBe(0)
      expect(pids.filter(isAlive)).toEqual([])
    })))

  it.live("a map counts its items one by one, by their own outcome", () =>
    isolated(
      Effect.gen(function*() {
        const pool = yield* makePool({ size: 2 })
        // 300 items: multiples of 10 fail, 13 dies, the rest succeed.
        const inputs = Array.from({ length: 300 }, (_, i) => (i % 10 === 0 ? -i - 1 : i === 13 ? 13 : i))
        const exits = yield* pool.mapExits(Square, inputs, { chunkSize: 25 })
        const successes = exits.filter(Exit.isSuccess).length
        expect(successes).toBe(269)
        yield* pool.map(Square, Array.from({ length: 1000 }, (_, i) => i + 20))
        const snapshot = yield* Metric.snapshot
        expect(count(snapshot, "process_pool_tasks_total", tasks("default", "Square", "success"))).toBe(1269)
        expect(count(snapshot, "process_pool_tasks_total", tasks("default", "Square", "failure"))).toBe(30)
        expect(count(snapshot, "process_pool_tasks_total", tasks("default", "Square", "defect"))).toBe(1)
        expect(histogram(snapshot, "process_pool_task_run_seconds", { pool: "default", task: "Square" }).count)
          .toBe(1300)
        expect(histogram(snapshot, "process_pool_task_wait_seconds", { pool: "default", task: "Square" }).count)
          .toBe(1300)
      }).pipe(Effect.scoped)
    ))

  it.live("a kill -9 under a map: the counts by outcome are the outcomes its caller sees", () =>
    isolated(
      Effect.gen(function*() {
        const pool = yield* makePool({ size: 2 })
        const running = yield* Effect.forkChild(
          pool.mapExits(Spin, Array.from({ length: 40 }, () => 30), { chunkSize: 4 })
        )
        yield* waitUntil("a busy worker", Effect.map(pool.stats, (s) => s.workers.some((w) => w.busy)))
        yield* Effect.sleep(100)
        process.kill((yield* pool.stats).workers.find((w) => w.busy)!.pid, "SIGKILL")
        const exits = yield* Fiber.join(running)
        const crashed = exits.filter(Exit.isFailure).length
        expect(crashed).toBeGreaterThan(0)
        const snapshot = yield* Metric.snapshot
        expect(count(snapshot, "process_pool_tasks_total", tasks("default", "Spin", "crashed"))).toBe(crashed)
        expect(count(snapshot, "process_pool_tasks_total", tasks("default", "Spin", "success"))).toBe(40 - crashed)
      }).pipe(Effect.scoped)
    ))

  it.live("the queue and in-flight gauges count a map's items one by one", () =>
    isolated(
      Effect.gen(function*() {
        const pool = yield* makePool({ prefetch: 0 })
        const sleeping = yield* Effect.forkChild(pool.submit(Sleep, { ms: 10_000 }))
        yield* waitUntil("a sleeping worker", Effect.map(pool.stats, (s) => s.running === 1))
        const mapping = yield* Effect.forkChild(
          pool.mapExits(Square, Array.from({ length: 20 }, (_, i) => i + 20), { chunkSize: 5, concurrency: 4 })
        )
        yield* waitUntil("four chunks queued", Effect.map(pool.stats, (s) => s.queued === 4))
        let snapshot = yield* Metric.snapshot
        expect(gauge(snapshot, "process_pool_queue_size", { pool: "default" })).toBe(20)
        expect(gauge(snapshot, "process_pool_tasks_inflight", { pool: "default" })).toBe(1)
        yield* Fiber.interrupt(sleeping)
        expect((yield* Fiber.join(mapping)).every(Exit.isSuccess)).toBe(true)
        snapshot = yield* Metric.snapshot
        expect(gauge(snapshot, "process_pool_queue_size", { pool: "default" })).toBe(0)
        expect(gauge(snapshot, "process_pool_tasks_inflight", { pool: "default" })).toBe(0)
      }).pipe(Effect.scoped)
    ))

  it.live("a runaway task is interrupted, and its worker's exit says runaway", () =>
    isolated(
      Effect.gen(function*() {
        const pool = yield* makePool({ interruptGrace: 200 })
        const spinning = yield* Effect.forkChild(pool.submit(Spin, 30_000))
        yield* waitUntil("a spinning worker", Effect.map(pool.stats, (s) => s.running === 1))
        yield* Fiber.interrupt(spinning)
        yield* waitUntil("the replacement", Effect.map(pool.stats, (s) => s.workers.length === 1))
        const snapshot = yield* Metric.snapshot
        expect(count(snapshot, "process_pool_tasks_total", tasks("default", "Spin", "interrupted"))).toBe(1)
        expect(count(snapshot, "process_pool_worker_exits_total", { pool: "default", reason: "runaway" })).toBe(1)
        expect(count(snapshot, "process_pool_worker_exits_total", { pool: "default", reason: "crashed" })).toBe(0)
      }).pipe(Effect.scoped)
    ))

  it.live("utilization: a worker busy for the whole last second reads 1, an idle one 0", () =>
    isolated(
      Effect.gen(function*() {
        const pool = yield* makePool()
        yield* Effect.sleep(1200)
        expect(gauge(yield* Metric.snapshot, "process_pool_utilization", { pool: "default" })).toBe(0)
        const sleeping = yield* Effect.forkChild(pool.submit(Sleep, { ms: 10_000 }))
        yield* Effect.sleep(1500)
        expect(gauge(yield* Metric.snapshot, "process_pool_utilization", { pool: "default" })).toBeCloseTo(1, 6)
        yield* Fiber.interrupt(sleeping)
      }).pipe(Effect.scoped)
    ))

  it.live("a task's metrics go to its caller's registry, with its caller's metric attributes", () =>
    isolated(
      Effect.gen(function*() {
        const pool = yield* makePool()
        const own = new Map() as Metric.MetricRegistry
        yield* pool.submit(Square, 2).pipe(Effect.provideService(Metric.MetricRegistry, own))
        yield* pool.submit(Square, 3).pipe(Effect.provideService(Metric.CurrentMetricAttributes, { service: "api" }))
        yield* pool.submit(Square, 4)
        const caller = yield* Metric.snapshot.pipe(Effect.provideService(Metric.MetricRegistry, own))
        expect(count(caller, "process_pool_tasks_total", tasks("default", "Square", "success"))).toBe(1)
        expect(series(caller, "process_pool_workers", {})).toBeUndefined()
        const snapshot = yield* Metric.snapshot
        const success = snapshot.filter((s) =>
          s.id === "process_pool_tasks_total" && s.attributes?.outcome === "success"
        )
        const byService = success.map((
          s
        ) => [s.attributes?.service ?? "", (s.state as Metric.CounterState<number>).count])
        expect(byService.sort()).toEqual([["", 1], ["api", 1]])
        expect(gauge(snapshot, "process_pool_workers", { pool: "default" })).toBe(1)
      }).pipe(Effect.scoped)
    ))

  it.live("metrics: false records none", () =>
    isolated(
      Effect.gen(function*() {
        const pool = yield* makePool({ metrics: false })
        expect(yield* pool.submit(Square, 3)).toBe(9)
        const snapshot = yield* Metric.snapshot
        expect(snapshot.filter((s) => s.id.startsWith("process_pool_"))).toEqual([])
      }).pipe(Effect.scoped)
    ))

  it.live("a second pool of the same name adds to the first one's counts, as Effect's own metrics do", () =>
    isolated(Effect.gen(function*() {
      const run = Effect.scoped(Effect.gen(function*() {
        const pool = yield* makePool()
        yield* Effect.forEach([1, 2], (n) => pool.submit(Square, n))
      }))
      yield* run
      yield* run
      const snapshot = yield* Metric.snapshot
      expect(count(snapshot, "process_pool_tasks_total", tasks("default", "Square", "success"))).toBe(4)
    })))

  it.live("two pools of one name alive at once: their counts add up, and a gauge is the sum over the live ones", () =>
    isolated(
      Effect.gen(function*() {
        const first = yield* Scope.make()
        const one = yield* Scope.provide(makePool({ size: 2 }), first)
        const two = yield* makePool()
        yield* Effect.forEach([1, 2, 3], (n) => one.submit(Square, n))
        yield* Effect.forEach([4, 5], (n) => two.submit(Square, n))
        let snapshot = yield* Metric.snapshot
        expect(count(snapshot, "process_pool_tasks_total", tasks("default", "Square", "success"))).toBe(5)
        expect(gauge(snapshot, "process_pool_workers", { pool: "default" })).toBe(3)
        yield* Scope.close(first, Exit.void)
        yield* two.submit(Square, 6)
        snapshot = yield* Metric.snapshot
        expect(count(snapshot, "process_pool_tasks_total", tasks("default", "Square", "success"))).toBe(6)
        expect(gauge(snapshot, "process_pool_workers", { pool: "default" })).toBe(1)
        expect(count(snapshot, "process_pool_worker_exits_total", { pool: "default", reason: "shutdown" })).toBe(2)
      }).pipe(Effect.scoped)
    ))
})

describe("statsStream", () => {
  it.live("a snapshot at once, then one every interval, ending with the one that finds the pool closed", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const pool = yield* Scope.provide(makePool({ size: 2 }), scope)
      const following = yield* Effect.forkChild(Stream.runCollect(pool.statsStream("20 millis")))
      yield* waitUntil("both workers", Effect.map(pool.stats, (s) => s.workers.length === 2))
      yield* pool.submit(Sleep, { ms: 100 })
      yield* Scope.close(scope, Exit.void)
      const snapshots = yield* Fiber.join(following)
      expect(snapshots.length).toBeGreaterThanOrEqual(3)
      expect(snapshots.at(-1)!.state).toBe("closed")
      expect(snapshots.slice(0, -1).every((s) => s.state !== "closed")).toBe(true)
      expect(snapshots.some((s) => s.running === 1)).toBe(true)
    }))
})
