/**
 * A crash inside a `map` chunk fails only what may have run, keeps what
 * finished, and runs again what never started: no item runs twice.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { Logged, SlowLogged } from "./fixtures/logged.ts"
import { fixture, poolLayer, waitUntil, workerPids } from "./helpers.ts"

/** How many times each item ran, across every worker's log. */
const runsPerItem = (dir: string): Map<number, number> => {
  const runs = new Map<number, number>()
  for (const file of fs.readdirSync(dir)) {
    for (const line of fs.readFileSync(path.join(dir, file), "utf8").split("\n")) {
      if (line === "") continue
      runs.set(Number(line), (runs.get(Number(line)) ?? 0) + 1)
    }
  }
  return runs
}

const linesIn = (dir: string): number =>
  fs.readdirSync(dir).reduce(
    (sum, file) => sum + fs.readFileSync(path.join(dir, file), "utf8").split("\n").length - 1,
    0
  )

/** Runs `mapExits` over n items, SIGKILLs a busy worker once `killAfter` items have run, and counts outcomes. */
const mapAndKill = (task: typeof Logged | typeof SlowLogged, n: number, killAfter: number) =>
  Effect.gen(function*() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "epp-chunks-"))
    const inputs = Array.from({ length: n }, (_, i) => ({ dir, n: i }))
    const fiber = yield* Effect.forkChild(ProcessPool.mapExits(task, inputs))
    yield* waitUntil("items running", () => linesIn(dir) >= killAfter, 20_000)
    const [victim] = yield* workerPids
    process.kill(victim, "SIGKILL")
    const exits = yield* Fiber.join(fiber)
    const runs = runsPerItem(dir)
    let succeeded = 0
    let failed = 0
    exits.forEach((exit, i) => {
      if (Exit.isSuccess(exit)) {
        succeeded++
        expect(exit.value).toBe(i * 2)
        // A result comes from exactly one run.
        expect(runs.get(i)).toBe(1)
      } else {
        failed++
        const error = Cause.squash(exit.cause)
        assert.instanceOf(error, PoolError.WorkerCrashed)
        expect(error.pid).toBe(victim)
        // It may have run once, in the worker that died; never twice.
        expect(runs.get(i) ?? 0).toBeLessThanOrEqual(1)
      }
    })
    for (const count of runs.values()) expect(count).toBe(1)
    fs.rmSync(dir, { recursive: true })
    return { succeeded, failed, runs: runs.size }
  })

describe("a crash inside a map chunk", () => {
  it.live("items of 2 ms: only the item that was running fails; the rest finish, none twice", () =>
    Effect.gen(function*() {
      const { failed, succeeded } = yield* mapAndKill(SlowLogged, 600, 100)
      expect(failed).toBe(1)
      expect(succeeded).toBe(599)
    }).pipe(Effect.provide(poolLayer({ worker: fixture("logged.ts"), size: 2 }))))

  it.live("tiny items: only the items of the part that was running fail; none runs twice", () =>
    Effect.gen(function*() {
      const n = 200_000
      const { failed, succeeded } = yield* mapAndKill(Logged, n, 20_000)
      expect(failed).toBeGreaterThanOrEqual(1)
      // About half a millisecond of work at most: far fewer than a whole chunk.
      expect(failed).toBeLessThan(1_000)
      expect(succeeded + failed).toBe(n)
      console.log(`tiny items: ${failed} of ${n} failed after a kill -9, the rest succeeded, none ran twice`)
    }).pipe(Effect.provide(poolLayer({ worker: fixture("logged.ts"), size: 2 }))))
})
