import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { Pid, Sleep, Spin, Square } from "./fixtures/tasks.ts"
import { isAlive, poolLayer, stats } from "./helpers.ts"

/** Builds a pool in a scope of its own, so a test can close it while work is in flight. */
const openPool = (options: Partial<ProcessPool.Options> = {}) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(poolLayer(options), scope)
    const pool = Context.getUnsafe(context, ProcessPool.ProcessPool)
    const pids = (yield* pool.stats).workers.map((w) => w.pid)
    return { scope, pool, pids }
  })

describe("shutdown", () => {
  it.live("drain: closing under load lets queued and running tasks finish, then stops every worker", () =>
    Effect.gen(function*() {
      const { pids, pool, scope } = yield* openPool({ shutdown: "drain" })
      const work = yield* Effect.forkChild(
        Effect.forEach(
          Array.from({ length: 40 }, (_, i) => i),
          (i) => Effect.exit(pool.submit(Sleep, { ms: 20 + i })),
          {
            concurrency: "unbounded"
          }
        )
      )
      yield* Effect.sleep(50)
      yield* Scope.close(scope, Exit.void)
      const exits = yield* Fiber.join(work)
      expect(exits.filter(Exit.isSuccess).length).toBe(40)
      expect(pids.filter(isAlive)).toEqual([])
      // After close, new work is refused with PoolClosed.
      const error = yield* Effect.flip(pool.submit(Square, 2))
      assert.instanceOf(error, PoolError.PoolClosed)
    }))

  it.live("interrupt: closing under load ends every queued and running task with PoolClosed", () =>
    Effect.gen(function*() {
      // A long shutdownTimeout: only interruption, not the timeout, can end this close in time for the test.
      const { pids, pool, scope } = yield* openPool({
        shutdown: "interrupt",
        interruptGrace: 300,
        shutdownTimeout: 120_000
      })
      const work = yield* Effect.forkChild(
        Effect.forEach(
          Array.from({ length: 30 }, (_, i) => i),
          (i) => Effect.exit(i % 3 === 0 ? pool.submit(Spin, 60_000) : pool.submit(Sleep, { ms: 60_000 })),
          { concurrency: "unbounded" }
        )
      )
      yield* Effect.sleep(200)
      yield* Scope.close(scope, Exit.void)
      const exits = yield* Fiber.join(work)
      expect(exits.length).toBe(30)
      for (const exit of exits) {
        assert(Exit.isFailure(exit))
        const error = Cause.squash(exit.cause)
        assert.instanceOf(error, PoolError.PoolClosed)
      }
      expect(pids.filter(isAlive)).toEqual([])
    }))

  it.live("drain gives up after shutdownTimeout: what is left ends with PoolClosed and workers are killed", () =>
    Effect.gen(function*() {
      const { pids, pool, scope } = yield* openPool({ shutdownTimeout: 300 })
      const running = yield* Effect.forkChild(Effect.exit(pool.submit(Spin, 60_000)))
      yield* Effect.sleep(200)
      yield* Scope.close(scope, Exit.void)
      const exit = yield* Fiber.join(running)
      assert(Exit.isFailure(exit))
      assert.instanceOf(Cause.squash(exit.cause), PoolError.PoolClosed)
      expect(pids.filter(isAlive)).toEqual([])
    }))
})

describe("recycling", () => {
  it.live("maxTasksPerWorker recycles workers without failing a task", () =>
    Effect.gen(function*() {
      const pids = yield* Effect.forEach(Array.from({ length: 12 }, (_, i) => i), () =>
        ProcessPool.submit(Pid, { ms: 5 }), {
        concurrency: 4
      })
      const distinct = new Set(pids)
      // 12 tasks, at most 3 per worker: at least 4 different processes served them.
      expect(distinct.size).toBeGreaterThanOrEqual(4)
      for (const pid of distinct) {
        expect(
          pids.filter((p) =>
            p === pid
          ).length
        ).toBeLessThanOrEqual(3)
      }
      expect((yield* stats).crashes).toBe(0)
    }).pipe(Effect.provide(poolLayer({ maxTasksPerWorker: 3 }))))
})

describe("back pressure", () => {
  it.live("queuePolicy reject: past maxQueue, submit fails with QueueFull and the pool goes on", () =>
    Effect.gen(function*() {
      // One worker with a window of 2, and one queue slot: the 4th concurrent task has no room.
      const held = yield* Effect.forkChild(
        Effect.forEach([0, 1, 2], () => ProcessPool.submit(Sleep, { ms: 300 }), { concurrency: "unbounded" })
      )
      yield* Effect.sleep(100)
      const error = yield* Effect.flip(ProcessPool.submit(Square, 3))
      assert.instanceOf(error, PoolError.QueueFull)
      expect(error.maxQueue).toBe(1)
      expect((yield* Fiber.join(held)).length).toBe(3)
      expect(yield* ProcessPool.submit(Square, 3)).toBe(9)
    }).pipe(Effect.provide(poolLayer({ size: 1, maxQueue: 1, queuePolicy: "reject" }))))

  it.live("queuePolicy wait: submit waits for room, and an interrupted waiter leaves no trace", () =>
    Effect.gen(function*() {
      const held = yield* Effect.forkChild(
        Effect.forEach([0, 1, 2], () => ProcessPool.submit(Sleep, { ms: 300 }), { concurrency: "unbounded" })
      )
      yield* Effect.sleep(100)
      const waiter = yield* Effect.forkChild(ProcessPool.submit(Square, 4))
      const cancelled = yield* Effect.forkChild(ProcessPool.submit(Square, 5))
      yield* Effect.sleep(50)
      expect((yield* stats).queued).toBe(3)
      yield* Fiber.interrupt(cancelled)
      expect((yield* stats).queued).toBe(2)
      expect(yield* Fiber.join(waiter)).toBe(16)
      yield* Fiber.join(held)
      const s = yield* stats
      expect({ queued: s.queued, inflight: s.inflight }).toEqual({ queued: 0, inflight: 0 })
    }).pipe(Effect.provide(poolLayer({ size: 1, maxQueue: 1 }))))
})
