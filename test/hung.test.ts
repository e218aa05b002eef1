import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ProcessPool from "../src/ProcessPool.ts"
import { BlockLater, Sleep, Square } from "./fixtures/tasks.ts"
import { isAlive, poolLayer, stats, workerPids } from "./helpers.ts"

describe("a worker found hung while idle", () => {
  it.live("gets its tasks back: none had started there, and each runs once, in the replacement", () =>
    Effect.gen(function*() {
      const pid = yield* ProcessPool.submit(BlockLater, 60_000)
      yield* Effect.sleep(50)
      // Sent to the blocked worker, which can start none of them. The first one, with a timeout
      // shorter than the hang takes to find plus its own run, gets the whole timeout once it starts.
      const [slow, ...squares] = yield* Effect.all([
        ProcessPool.submit(Sleep, { ms: 1_000 }, { timeout: 1_400 }),
        ...[2, 3, 4, 5].map((n) => ProcessPool.submit(Square, n))
      ], { concurrency: "unbounded" })
      expect(squares).toEqual([4, 9, 16, 25])
      expect(slow).not.toBe(pid)
      expect(isAlive(pid)).toBe(false)
      expect(yield* workerPids).not.toContain(pid)
      const s = yield* stats
      expect(s.crashes).toBe(1)
      expect(s.workers.reduce((n, w) => n + w.tasksDone, 0)).toBe(5)
    }).pipe(Effect.provide(poolLayer({ size: 1, heartbeatInterval: 50, hangTimeout: 400 }))))
})
