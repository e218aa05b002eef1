/**
 * Chaos soak: many tasks while workers are SIGKILLed at random.
 *
 * CI runs 100,000 tasks. `SOAK=long` runs 1,000,000, and `SOAK_TASKS=n` any number.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { Negative, Square } from "./fixtures/tasks.ts"
import { isAlive, poolLayer, stats } from "./helpers.ts"

const total = Number(process.env.SOAK_TASKS ?? (process.env.SOAK === "long" ? 1_000_000 : 100_000))
const round = 10_000

describe("chaos soak", () => {
  it.live(
    `${total} tasks while workers are SIGKILLed at random: every task ends exactly once`,
    () =>
      Effect.gen(function*() {
        const seen = new Set<number>()
        const outcomes = { success: 0, failure: 0, crashed: 0 }
        let crashedNegative = 0
        const unexpected: Array<string> = []
        let kills = 0
        const rss: Array<number> = []
        const heap: Array<number> = []
        const gc = (globalThis as { gc?: () => void }).gc

        const run = Effect.gen(function*() {
          const killer = yield* Effect.forkChild(Effect.forever(Effect.gen(function*() {
            yield* Effect.sleep(20 + Math.floor(Math.random() * 40))
            const ready = (yield* stats).workers.filter((w) => w.state === "ready")
            for (const w of ready) seen.add(w.pid)
            // Keep one worker standing so that work goes on between respawns.
            if (ready.length < 2) return
            process.kill(ready[Math.floor(Math.random() * ready.length)].pid, "SIGKILL")
            kills++
          })))
          for (let start = 0; start < total; start += round) {
            const inputs = Array.from({ length: Math.min(round, total - start) }, (_, i) => {
              const n = start + i
              return n % 7 === 0 ? -n - 1 : n + 14
            })
            const exits = yield* Effect.forEach(inputs, (x) => Effect.exit(ProcessPool.submit(Square, x)), {
              concurrency: "unbounded"
            })
            exits.forEach((exit, i) => {
              const x = inputs[i]
              if (Exit.isSuccess(exit)) {
                if (exit.value === x * x) outcomes.success++
                else unexpected.push(`wrong result ${exit.value} for ${x}`)
                return
              }
              const error = Cause.squash(exit.cause)
              if (error instanceof Negative && error.n === x) outcomes.failure++
              else if (error instanceof PoolError.WorkerCrashed) {
                outcomes.crashed++
                if (x < 0) crashedNegative++
              } else unexpected.push(`unexpected outcome for ${x}: ${Cause.pretty(exit.cause)}`)
            })
            gc?.()
            const memory = process.memoryUsage()
            rss.push(memory.rss)
            heap.push(memory.heapUsed)
          }
          yield* Fiber.interrupt(killer)
          for (const w of (yield* stats).workers) seen.add(w.pid)
        })
        yield* run.pipe(Effect.provide(poolLayer({ size: 3 })))

        const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MB`
        console.log(
          `soak: ${total} tasks, ${kills} kills, outcomes ${JSON.stringify(outcomes)}; parent after the first ` +
            `and the last round: heap ${mb(heap[0])} -> ${mb(heap.at(-1)!)}, RSS ${mb(rss[0])} -> ${mb(rss.at(-1)!)}`
        )
        expect(unexpected.slice(0, 5)).toEqual([])
        expect(outcomes.success + outcomes.failure + outcomes.crashed).toBe(total)
        // Every 7th input fails with Negative, unless its worker died under it.
        expect(outcomes.failure + crashedNegative).toBe(Math.ceil(total / 7))
        expect(kills).toBeGreaterThan(0)
        // Only a task running when its worker died fails: one per kill at most.
        expect(outcomes.crashed).toBeLessThanOrEqual(kills)
        // Flat memory: after a collection, the last round holds no more than the first, give or take.
        assert(gc !== undefined, "run with --expose-gc (vitest.config.ts sets it)")
        expect(heap.at(-1)! - heap[0]).toBeLessThan(16 * 2 ** 20)
        // Every worker ever seen is gone.
        assert.deepStrictEqual([...seen].filter(isAlive), [])
      }),
    { timeout: total > 100_000 ? 3_600_000 : 300_000 }
  )
})
