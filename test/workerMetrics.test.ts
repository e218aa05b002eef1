/**
 * A handler's own metrics, merged in the parent's registry across two real
 * workers, and what a worker's death does to them.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as References from "effect/References"
import * as Scope from "effect/Scope"
import * as ProcessPool from "../src/ProcessPool.ts"
import { EndIf, holding, jobs, kinds, Measure } from "./fixtures/observed.ts"
import { count, fixture, gauge, isAlive, series, waitUntil } from "./helpers.ts"

for (const isolation of ["process", "thread"] as const) {
  describe(`worker metrics: ${isolation}`, () => {
    it.live("counters, histograms, frequencies and gauges from two workers read as one process's", () =>
      Effect.gen(function*() {
        const scope = yield* Scope.make()
        const pool = yield* Scope.provide(
          ProcessPool.make({ worker: fixture("observed.ts"), isolation, size: 2, inheritStderr: false }),
          scope
        )
        const inputs = Array.from({ length: 40 }, (_, i) => i + 1)
        const pids = yield* Effect.forEach(inputs, (n) => pool.submit(Measure, n), { concurrency: "unbounded" })
        const share = new Map<number, number>()
        pids.forEach((pid, i) => share.set(pid, (share.get(pid) ?? 0) + inputs[i]))
        expect(share.size).toBe(2)
        const [first, second] = [...share.keys()]

        // What the handlers counted is there as soon as their results are.
        let snapshot = yield* Metric.snapshot
        expect(count(snapshot, "observed_jobs_total", {})).toBe(40)
        const size = series(snapshot, "observed_job_size", {})!.state as Metric.HistogramState
        expect(size.count).toBe(40)
        expect(size.sum).toBe(820)
        expect(size.min).toBe(1)
        expect(size.max).toBe(40)
        expect(size.buckets).toEqual([[1, 1], [10, 10], [100, 40]])
        const words = (series(snapshot, "observed_job_kind", {})!.state as Metric.FrequencyState).occurrences
        expect(Object.fromEntries(words)).toEqual({ even: 20, odd: 20 })
        // A gauge is the sum of the workers' values.
        expect(gauge(snapshot, "observed_holding", {})).toBe(820)
        // One series a worker, where the metric asks for it; none merged.
        const last = (pid: number) => gauge(snapshot, "observed_last", { "process_pool.worker_pid": String(pid) })
        expect(last(first)).toBe(Math.max(...inputs.filter((_, i) => pids[i] === first)))
        expect(last(second)).toBe(Math.max(...inputs.filter((_, i) => pids[i] === second)))
        expect(snapshot.filter((s) => s.id === "observed_last").length).toBe(2)

        // The parent's own updates go to the same series.
        yield* Metric.update(jobs, 2)
        yield* Metric.update(kinds, "parent")
        snapshot = yield* Metric.snapshot
        expect(count(snapshot, "observed_jobs_total", {})).toBe(42)

        // A worker's death: its counts stay, its share of a gauge and its own series go.
        if (isolation === "process") process.kill(first, "SIGKILL")
        else {
          // A thread is ended from inside: tasks go to either thread until one lands on it.
          for (let i = 0; i < 100 && (yield* pool.stats).workers.some((w) => w.pid === first); i++) {
            yield* Effect.ignore(pool.submit(EndIf, first))
          }
        }
        yield* waitUntil("the replacement", Effect.map(pool.stats, (s) => s.workers.every((w) => w.pid !== first)))
        snapshot = yield* Metric.snapshot
        expect(count(snapshot, "observed_jobs_total", {})).toBe(42)
        expect(gauge(snapshot, "observed_holding", {})).toBe(share.get(second))
        expect(snapshot.filter((s) => s.id === "observed_last").map((s) => s.attributes?.["process_pool.worker_pid"]))
          .toEqual([String(second)])
        yield* Metric.modify(holding, 1)
        expect(gauge(yield* Metric.snapshot, "observed_holding", {})).toBe(share.get(second)! + 1)

        // Closed: the last workers' shares go, the parent's stays, and no worker is left.
        const remaining = (yield* pool.stats).workers.map((w) => w.pid)
        yield* Scope.close(scope, Exit.void)
        snapshot = yield* Metric.snapshot
        expect(gauge(snapshot, "observed_holding", {})).toBe(1)
        expect(count(snapshot, "observed_jobs_total", {})).toBe(42)
        expect(snapshot.filter((s) => s.id === "observed_last")).toEqual([])
        // Threads end with their pool too; their ids are no pids to look for.
        if (isolation === "process") expect([...remaining, first].filter(isAlive)).toEqual([])
      }).pipe(
        Effect.provideService(Metric.MetricRegistry, new Map()),
        // The fixture's services log as they are built: not this test's concern.
        Effect.provideService(References.CurrentLoggers, new Set())
      ))
  })
}
