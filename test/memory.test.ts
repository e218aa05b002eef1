/**
 * The client and the worker's serve loop against each other in memory: the
 * same dispatcher, supervisor and server, the same messages through the same
 * encodings, and no process. The real-process tests stay the reference; these
 * pin down the protocol between the two halves.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import streams, { Count, FailAfter } from "./fixtures/streams.ts"
import { BinaryEcho, Negative, Point, Sleep, Square } from "./fixtures/tasks.ts"
import worker from "./fixtures/worker.ts"
import { tempFile, waitUntil } from "./helpers.ts"

const inMemory = (served: typeof worker | typeof streams, options: Partial<ProcessPool.Options> = {}) =>
  ProcessPool.makeTest({ size: 2, ...options, worker: served as never })

describe("client and server in memory", () => {
  it.live("tasks, typed failures, defects and batches", () =>
    Effect.gen(function*() {
      const pool = yield* inMemory(worker)
      expect(yield* pool.submit(Square, 12)).toBe(144)
      const failure = yield* Effect.flip(pool.submit(Square, -2))
      assert.instanceOf(failure, Negative)
      const exit = yield* Effect.exit(pool.submit(Square, 13))
      assert(Exit.isFailure(exit) && Cause.hasDies(exit.cause))
      const inputs = Array.from({ length: 20_000 }, (_, i) => i + 20)
      expect(yield* pool.map(Square, inputs, { chunkSize: 1_000 })).toEqual(inputs.map((i) => i * i))
      const exits = yield* pool.mapExits(Square, [1, -1, 2], { chunkSize: 3 })
      expect(exits.map(Exit.isSuccess)).toEqual([true, false, true])
      const bytes = new Uint8Array([1, 2, 3])
      const echoed = yield* pool.submit(BinaryEcho, {
        bytes,
        at: new Date(0),
        big: 7n,
        point: new Point({ x: 3, y: 4 })
      })
      expect(echoed.sum).toBe(6)
      expect(echoed.point.norm()).toBe(5)
    }).pipe(Effect.scoped))

  it.live("interruption reaches the server, whose finalizers run", () =>
    Effect.gen(function*() {
      const pool = yield* inMemory(worker)
      const file = tempFile("interrupted")
      const fiber = yield* Effect.forkChild(pool.submit(Sleep, { ms: 60_000, file }))
      yield* waitUntil("the task to run", Effect.map(pool.stats, (s) => s.running === 1))
      yield* Fiber.interrupt(fiber)
      expect(fs.existsSync(file)).toBe(true)
      expect((yield* pool.stats).inflight).toBe(0)
    }).pipe(Effect.scoped))

  it.live("streams, with the window and acknowledgements between the two", () =>
    Effect.gen(function*() {
      const pool = yield* inMemory(streams, { streamWindow: 4 })
      expect(yield* Stream.runCollect(pool.submit(Count, 50))).toEqual(Array.from({ length: 50 }, (_, i) => i))
      const items: Array<number> = []
      const exit = yield* Effect.exit(
        Stream.runForEach(pool.submit(FailAfter, -9), (n) => Effect.sync(() => items.push(n)))
      )
      expect(items).toEqual([1, 2, 3])
      assert(Exit.isFailure(exit))
      assert.instanceOf(Cause.squash(exit.cause), Negative)
    }).pipe(Effect.scoped))

  it.live("closing drains, then the pool says it is closed", () =>
    Effect.gen(function*() {
      const pool = yield* Effect.scoped(inMemory(worker))
      const error = yield* Effect.flip(pool.submit(Square, 1))
      assert.instanceOf(error, PoolError.PoolClosed)
      expect(error.state).toBe("closed")
    }))
})
