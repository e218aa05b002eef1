import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { clusterPool, postgres, runner } from "./cluster.ts"
import { Negative, Square, Unserved } from "./fixtures/tasks.ts"

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
