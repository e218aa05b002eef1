import { assert, describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as ProcessPool from "../src/ProcessPool.ts"
import { SplitFrame } from "./fixtures/process-worker.ts"
import { Pid, Sleep } from "./fixtures/tasks.ts"
import { fixture, isAlive, poolLayer, stats, tempFile, waitUntil, workerPids } from "./helpers.ts"

/**
 * Blocks this process's event loop, as a long synchronous call, a GC pause or
 * a debugger would: timers come due meanwhile, and replies wait in the pipes.
 */
const block = (ms: number): void => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    // nothing else runs meanwhile
  }
}

/**
 * Blocks from a `setImmediate` callback, where an Effect program does most of
 * its work. Node runs the timers that came due during a block inside a timer
 * callback only on its next turn, after reading the pipes, which would hide
 * the flaw these tests are about.
 */
const blockSoon = (ms: number) => Effect.yieldNow.pipe(Effect.andThen(Effect.sync(() => block(ms))))

/**
 * Starts `effect` at once, then blocks the event loop for `ms`: "before" its
 * messages are written (they leave once the block ends), or "after" they are.
 */
const runThenBlock = <A, E>(effect: Effect.Effect<A, E>, ms: number, when: "before" | "after") =>
  Effect.yieldNow.pipe(Effect.andThen(Effect.sync(() => {
    const fiber = Effect.runFork(effect)
    if (when === "before") block(ms)
    else queueMicrotask(() => block(ms))
    return fiber
  })))

describe("a parent that stalls", () => {
  for (const when of ["before", "after"] as const) {
    it.live(`for longer than hangTimeout ${when} a task is written does not get a healthy worker killed`, () =>
      Effect.gen(function*() {
        const pool = yield* ProcessPool.ProcessPool
        const [pid] = yield* workerPids
        // Idle long enough for a ping to go ahead of the task.
        yield* Effect.sleep(100)
        const task = yield* runThenBlock(pool.submit(Pid, { ms: 0 }), 1_000, when)
        expect(yield* Fiber.join(task)).toBe(pid)
        expect(yield* pool.submit(Pid, { ms: 0 })).toBe(pid)
        expect((yield* stats).crashes).toBe(0)
      }).pipe(Effect.provide(poolLayer({ size: 1, heartbeatInterval: 50, hangTimeout: 300 }))))
  }

  it.live("while part of a frame waits for the rest does not take the worker's stream for broken", () =>
    Effect.gen(function*() {
      const [pid] = yield* workerPids
      // The worker writes half a frame, holds its event loop 600 ms, then writes the rest.
      const task = yield* Effect.forkChild(ProcessPool.submit(SplitFrame, 600))
      yield* Effect.sleep(150)
      yield* blockSoon(2_500)
      expect(yield* Fiber.join(task)).toBe(pid)
      expect((yield* stats).crashes).toBe(0)
    }).pipe(Effect.provide(
      poolLayer({ worker: fixture("process-worker.ts"), size: 1, heartbeatInterval: 50, hangTimeout: 1_000 })
    )))

  for (const when of ["before", "after"] as const) {
    it.live(`for longer than interruptGrace ${when} an interrupt is written does not get the worker killed`, () =>
      Effect.gen(function*() {
        const [pid] = yield* workerPids
        const file = tempFile("interrupted")
        const task = yield* Effect.forkChild(ProcessPool.submit(Sleep, { ms: 60_000, file }))
        yield* waitUntil("the task to run", Effect.map(stats, (s) => s.inflight === 1))
        yield* Effect.sleep(100)
        yield* Fiber.join(yield* runThenBlock(Fiber.interrupt(task), 1_000, when))
        expect(fs.readFileSync(file, "utf8")).toBe(String(pid))
        expect(isAlive(pid)).toBe(true)
        expect(yield* workerPids).toEqual([pid])
        expect((yield* stats).crashes).toBe(0)
      }).pipe(Effect.provide(poolLayer({ size: 1, interruptGrace: 300 }))))
  }

  it.live("past a task's timeout, after the task has answered, gets its answer, not TaskTimeout", () =>
    Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      const task = yield* runThenBlock(pool.submit(Sleep, { ms: 100 }, { timeout: 500 }), 1_500, "after")
      const exit = yield* Fiber.await(task)
      assert(Exit.isSuccess(exit))
      expect((yield* stats).crashes).toBe(0)
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))

  it.live("past shutdownTimeout while the pool drains gets the answers that came meanwhile", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(poolLayer({ size: 1, shutdownTimeout: 500 }), scope)
      const pool = Context.getUnsafe(context, ProcessPool.ProcessPool)
      const [pid] = (yield* pool.stats).workers.map((w) => w.pid)
      const task = yield* Effect.forkChild(pool.submit(Sleep, { ms: 100 }))
      yield* waitUntil("the task to run", Effect.map(pool.stats, (s) => s.inflight === 1))
      const closing = yield* runThenBlock(Scope.close(scope, Exit.void), 1_500, "after")
      const exit = yield* Fiber.await(task)
      assert(Exit.isSuccess(exit))
      yield* Fiber.join(closing)
      expect(isAlive(pid)).toBe(false)
    }))

  it.live("past startTimeout while its workers start does not fail the pool", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      // The worker is ready long before the block ends; its Ready waits in the pipe.
      const building = yield* runThenBlock(
        Layer.buildWithScope(poolLayer({ size: 1, startTimeout: 4_000 }), scope),
        5_000,
        "before"
      )
      const exit = yield* Fiber.await(building)
      yield* Scope.close(scope, Exit.void)
      assert(Exit.isSuccess(exit))
    }))
})
