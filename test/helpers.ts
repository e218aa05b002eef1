/**
 * Shared helpers for tests that spawn real processes.
 */
import * as Effect from "effect/Effect"
import type * as Metric from "effect/Metric"
import * as fs from "node:fs"
import * as ProcessPool from "../src/ProcessPool.ts"

/** The URL of a module in test/fixtures. */
export const fixture = (name: string): URL => new URL(`./fixtures/${name}`, import.meta.url)

/** A pool over the main fixture worker, quiet on stderr. */
export const poolLayer = (options: Partial<ProcessPool.Options> = {}) =>
  ProcessPool.layer({ worker: fixture("worker.ts"), size: 2, inheritStderr: false, ...options })

/** Whether a process exists and is not a zombie waiting to be reaped. */
export const isAlive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    if (fs.existsSync("/proc/self")) return false
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }
}

/** Polls `predicate` every 25 ms until it holds, or fails after `ms`. */
export const waitUntil = <E = never, R = never>(
  what: string,
  predicate: (() => boolean) | Effect.Effect<boolean, E, R>,
  ms = 5_000
): Effect.Effect<void, Error | E, R> =>
  Effect.gen(function*() {
    const check = typeof predicate === "function" ? Effect.sync(predicate) : predicate
    const deadline = Date.now() + ms
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out after ${ms} ms waiting for ${what}`))
      yield* Effect.sleep(25)
    }
  })

/** A snapshot of the pool in context. */
export const stats = ProcessPool.ProcessPool.use((pool) => pool.stats)

/** Waits until some worker has a task in flight, and returns its pid. */
export const busyWorker = Effect.gen(function*() {
  yield* waitUntil("a busy worker", Effect.map(stats, (s) => s.workers.some((w) => w.inflight > 0)))
  return (yield* stats).workers.find((w) => w.inflight > 0)!.pid
})

/** The pids of the pool's workers. */
export const workerPids = Effect.map(stats, (s) => s.workers.map((w) => w.pid))

/** A fresh temporary file path. */
export const tempFile = (name: string): string => `${fs.mkdtempSync(`${process.env.TMPDIR ?? "/tmp"}/epp-`)}/${name}`

/** The state of the series `id` whose attributes include `attributes`. */
export const series = (
  snapshot: ReadonlyArray<Metric.Metric.Snapshot>,
  id: string,
  attributes: Record<string, string>
): Metric.Metric.Snapshot | undefined =>
  snapshot.find((s) => s.id === id && Object.entries(attributes).every(([key, value]) => s.attributes?.[key] === value))

/** A counter's count, 0 when the series is missing. */
export const count = (
  snapshot: ReadonlyArray<Metric.Metric.Snapshot>,
  id: string,
  attributes: Record<string, string>
) => Number((series(snapshot, id, attributes)?.state as Metric.CounterState<number> | undefined)?.count ?? 0)

/** A gauge's value. */
export const gauge = (
  snapshot: ReadonlyArray<Metric.Metric.Snapshot>,
  id: string,
  attributes: Record<string, string>
) => Number((series(snapshot, id, attributes)?.state as Metric.GaugeState<number> | undefined)?.value)
