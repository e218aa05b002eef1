import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as fs from "node:fs"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { childrenOf, clusterPool, kill9, postgres, runner } from "./cluster.ts"
import { Again, Once } from "./fixtures/cluster-tasks.ts"
import { Negative, Square, Unserved } from "./fixtures/tasks.ts"
import { isAlive, tempFile, waitUntil } from "./helpers.ts"

describe("cluster", () => {
  it.live(
    "3 runners and a client: 2,000 tasks, every outcome correct, every runner served some",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        const runners = yield* Effect.all([runner(pg.port), runner(pg.port), runner(pg.port)], {
          concurrency: "unbounded"
        })
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const inputs = Array.from({ length: 2_000 }, (_, i) => i - 10)
          const exits = yield* pool.mapExits(Square, inputs)
          expect(exits.length).toBe(2_000)
          exits.forEach((exit, i) => {
            const n = inputs[i]
            if (n < 0) {
              assert(Exit.isFailure(exit))
              const error = Cause.squash(exit.cause)
              assert.instanceOf(error, Negative)
              expect(error.n).toBe(n)
            } else if (n === 13) {
              assert(Exit.isFailure(exit))
              const defect = Cause.squash(exit.cause) as Error
              expect(defect.name).toBe("RangeError")
              expect(defect.stack).toContain("fixtures/worker.ts")
            } else {
              expect(exit).toStrictEqual(Exit.succeed(n * n))
            }
          })

          expect(yield* pool.submit(Square, 12)).toBe(144)
          const failure = yield* Effect.flip(pool.submit(Square, -3))
          assert.instanceOf(failure, Negative)
          const bad = yield* Effect.flip(pool.submit(Square, "3" as unknown as number))
          assert.instanceOf(bad, PoolError.SerializationError)
          expect(bad.direction).toBe("payload")
          const unserved = yield* Effect.flip(pool.submit(Unserved, 1))
          assert.instanceOf(unserved, PoolError.TaskNotServed)

          const stats = yield* pool.stats
          expect(stats.runners?.map((r) => r.pid).sort()).toStrictEqual(runners.map((r) => r.pid).sort())
          for (const each of stats.runners ?? []) {
            expect(each.stats.workers.reduce((n, w) => n + w.tasksDone, 0)).toBeGreaterThan(0)
          }
        }).pipe(Effect.provide(clusterPool(pg.port)))
      }).pipe(Effect.scoped),
    120_000
  )
})

describe("cluster: a runner dies", () => {
  it.live(
    "kill -9 under load: every task accounted for once, idempotent ones all succeed, the stall bounded",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        const runners = yield* Effect.all([runner(pg.port), runner(pg.port), runner(pg.port)], {
          concurrency: "unbounded"
        })
        const [victim] = runners
        const onceFile = tempFile("once")
        const againFile = tempFile("again")
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const count = 200
          let killedAt = 0
          let firstLoss = 0
          const run = (task: typeof Once | typeof Again, file: string) =>
            Effect.forEach(
              Array.from({ length: count }, (_, id) => id),
              (id) =>
                Effect.exit(pool.submit(task, { id, ms: 40, file })).pipe(
                  Effect.tap((exit) =>
                    Effect.sync(() => {
                      if (killedAt > 0 && firstLoss === 0 && Exit.isFailure(exit)) firstLoss = Date.now()
                    })
                  )
                ),
              { concurrency: "unbounded" }
            )
          const outcomes = yield* Effect.forkChild(Effect.all([run(Once, onceFile), run(Again, againFile)], {
            concurrency: 2
          }))
          // Kill it once work is flowing, and its workers with it as a machine failure would.
          yield* waitUntil("work to flow", () => starts(onceFile).length >= 40, 30_000)
          const workers = childrenOf(victim.pid)
          yield* kill9(victim)
          killedAt = Date.now()
          const [once, again] = yield* Fiber.join(outcomes).pipe(Effect.timeout("60 seconds"))
          yield* waitUntil("the dead runner's workers to exit", () => workers.every((w) => !isAlive(w)))

          // Every idempotent task succeeded, some of them after running again elsewhere.
          again.forEach((exit, id) => expect(exit).toStrictEqual(Exit.succeed({ id, pid: expect.any(Number) })))
          // Every other task either succeeded, having started once, or failed with WorkerCrashed naming the
          // dead runner, having started at most once: none ran twice.
          const started = starts(onceFile)
          const lost = once.filter((exit) => Exit.isFailure(exit))
          expect(lost.length).toBeGreaterThan(0)
          once.forEach((exit, id) => {
            const times = started.filter((s) => s === id).length
            if (Exit.isSuccess(exit)) {
              expect(exit.value.id).toBe(id)
              expect(times).toBe(1)
            } else {
              const error = Cause.squash(exit.cause)
              assert.instanceOf(error, PoolError.WorkerCrashed)
              expect(error.runner).toBe(`127.0.0.1:${victim.port}`)
              expect(error.pid).toBe(victim.pid)
              expect(times).toBeLessThanOrEqual(1)
            }
          })
          const stall = firstLoss - killedAt
          yield* Effect.log(`stall after kill -9: ${stall} ms until the first lost task was reported`)
          expect(stall).toBeLessThan(5_000)
        }).pipe(Effect.provide(clusterPool(pg.port)))
      }).pipe(Effect.scoped),
    120_000
  )
})

/** The ids that started, one line each, in a file the tasks append to. */
const starts = (file: string): Array<number> => {
  try {
    return fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map((line) => Number(line.split(" ")[0]))
  } catch {
    return []
  }
}
