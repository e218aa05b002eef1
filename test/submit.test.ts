import { assert, describe, expect, it, layer } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import {
  BadResult,
  BinaryEcho,
  Greeting,
  Negative,
  Pid,
  Plain,
  Point,
  Rich,
  Square,
  Traced,
  Unserved
} from "./fixtures/tasks.ts"
import { poolLayer } from "./helpers.ts"

layer(poolLayer(), { excludeTestServices: true })("submit", (it) => {
  it.effect("runs a task in a worker process, not in the parent", () =>
    Effect.gen(function*() {
      expect(yield* ProcessPool.submit(Square, 7)).toBe(49)
      const pid = yield* ProcessPool.submit(Pid, { ms: 0 })
      expect(pid).not.toBe(process.pid)
      const stats = yield* ProcessPool.ProcessPool.use((pool) => pool.stats)
      expect(stats.workers.map((w) => w.pid)).toContain(pid)
    }))

  it.effect("a typed failure arrives as an instance of its class, so catchTag works", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ProcessPool.submit(Square, -3))
      assert.instanceOf(error, Negative)
      expect(error.n).toBe(-3)
      const recovered = yield* ProcessPool.submit(Square, -1).pipe(
        Effect.catchTag("Negative", (e) => Effect.succeed(e.n * 100))
      )
      expect(recovered).toBe(-100)
    }))

  it.effect("a defect keeps its remote name, message and stack", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(ProcessPool.submit(Square, 13))
      assert(Exit.isFailure(exit))
      const defect = Cause.squash(exit.cause)
      assert.instanceOf(defect, Error)
      expect(defect.name).toBe("RangeError")
      expect(defect.message).toBe("thirteen is unlucky")
      expect(defect.stack).toContain("fixtures/worker.ts")
      expect(Cause.pretty(exit.cause)).toContain("thirteen is unlucky")
    }))

  it.effect("Date, BigInt, bytes and classes survive the round trip", () =>
    Effect.gen(function*() {
      const input = {
        at: new Date("2024-02-29T12:00:00Z"),
        big: 2n ** 70n,
        bytes: new Uint8Array([0, 1, 254, 255]),
        point: new Point({ x: 3, y: 4 })
      }
      const output = yield* ProcessPool.submit(Rich, input)
      assert.instanceOf(output.at, Date)
      expect(output.at.getTime()).toBe(input.at.getTime())
      expect(output.big).toBe(2n ** 70n)
      assert.instanceOf(output.bytes, Uint8Array)
      expect(Array.from(output.bytes)).toEqual([0, 1, 254, 255])
      assert.instanceOf(output.point, Point)
      expect(output.point.norm()).toBe(5)
    }))

  it.effect("a binary task carries bytes raw, with rich values and typed failures, alone and in batches", () =>
    Effect.gen(function*() {
      const bytes = new Uint8Array(4 * 1024 * 1024).map((_, i) => i % 251)
      const input = { bytes, at: new Date("2024-02-29T12:00:00Z"), big: 2n ** 70n, point: new Point({ x: 3, y: 4 }) }
      const output = yield* ProcessPool.submit(BinaryEcho, input)
      assert.instanceOf(output.bytes, Uint8Array)
      expect(output.bytes.length).toBe(bytes.length)
      expect(Buffer.from(output.bytes).equals(Buffer.from(bytes))).toBe(true)
      expect(output.sum).toBe(bytes.reduce((a, b) => a + b, 0))
      expect(output.at.getTime()).toBe(input.at.getTime())
      expect(output.big).toBe(2n ** 70n)
      assert.instanceOf(output.point, Point)
      const error = yield* Effect.flip(ProcessPool.submit(BinaryEcho, { ...input, bytes: new Uint8Array(0) }))
      assert.instanceOf(error, Negative)
      const small = Array.from({ length: 50 }, (_, i) => ({ ...input, bytes: new Uint8Array([i, 1]) }))
      const sums = yield* ProcessPool.map(BinaryEcho, small, { chunkSize: 8 })
      expect(sums.map((s) => s.sum)).toEqual(small.map((_, i) => i + 1))
      const exits = yield* ProcessPool.mapExits(BinaryEcho, [small[3], { ...input, bytes: new Uint8Array(0) }], {
        chunkSize: 2
      })
      expect(Exit.isSuccess(exits[0])).toBe(true)
      assert(Exit.isFailure(exits[1]))
      assert.instanceOf(Cause.squash(exits[1].cause), Negative)
    }))

  it.effect("a bad payload fails at the caller and is never sent", () =>
    Effect.gen(function*() {
      const before = yield* ProcessPool.ProcessPool.use((pool) => pool.stats)
      const error = yield* Effect.flip(ProcessPool.submit(Square, "7" as unknown as number))
      assert.instanceOf(error, PoolError.SerializationError)
      expect(error.direction).toBe("payload")
      expect(error.task).toBe("Square")
      expect(error.issue).toContain("Expected number")
      const after = yield* ProcessPool.ProcessPool.use((pool) => pool.stats)
      const done = (s: typeof before) => s.workers.reduce((n, w) => n + w.tasksDone, 0)
      expect(done(after)).toBe(done(before))
      // The pool goes on.
      expect(yield* ProcessPool.submit(Square, 3)).toBe(9)
    }))

  it.effect("a bad result is a SerializationError in direction result", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ProcessPool.submit(BadResult, 1))
      assert.instanceOf(error, PoolError.SerializationError)
      expect(error.direction).toBe("result")
      expect(error.message).toContain("BadResult")
    }))

  it.effect("a tag the module does not serve gets TaskNotServed", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ProcessPool.submit(Unserved, 1))
      assert.instanceOf(error, PoolError.TaskNotServed)
      expect(error.task).toBe("Unserved")
      expect(PoolError.isPoolError(error)).toBe(true)
      expect(PoolError.isPoolError(new Negative({ n: 1 }))).toBe(false)
    }))

  it.effect("called inside a span, a task runs in a span of its own in the caller's trace, alone and in batches", () =>
    Effect.gen(function*() {
      expect(yield* ProcessPool.submit(Traced, 0)).toEqual({ traceId: "", name: "", parentSpanId: "" })
      const [caller, alone, batch] = yield* Effect.gen(function*() {
        const span = yield* Effect.currentSpan
        return [
          span,
          yield* ProcessPool.submit(Traced, 0),
          yield* ProcessPool.map(Traced, [1, 2, 3], { chunkSize: 3 })
        ] as const
      }).pipe(Effect.withSpan("caller"))
      expect(alone).toEqual({ traceId: caller.traceId, name: "ProcessPool.task Traced", parentSpanId: caller.spanId })
      for (const item of batch) expect(item.traceId).toBe(caller.traceId)
    }))

  it.effect("handlers get the services of Worker.provide", () =>
    Effect.gen(function*() {
      const greeting = yield* ProcessPool.submit(Greeting, "ann")
      expect(greeting).toMatch(/^hello, ann from \d+$/)
    }))
})

layer(poolLayer(), { excludeTestServices: true })("map", (it) => {
  const inputs = Array.from({ length: 1000 }, (_, i) => i + 14)
  const squares = inputs.map((n) => n * n)

  it.effect("ordered map returns results in input order, at every chunk size", () =>
    Effect.gen(function*() {
      for (const chunkSize of [1, 7, "auto"] as const) {
        expect(yield* ProcessPool.map(Square, inputs, { chunkSize })).toEqual(squares)
      }
      // A generator of unknown length is chunked and run like an array.
      function* generated() {
        yield* inputs
      }
      expect(yield* ProcessPool.map(Square, generated())).toEqual(squares)
      expect(yield* ProcessPool.map(Square, new Set([2, 3]))).toEqual([4, 9])
      expect(yield* ProcessPool.map(Square, [])).toEqual([])
    }))

  it.effect(
    "large chunks, written in parts faster than the parent reads them, all finish",
    () =>
      Effect.gen(function*() {
        // Chunks of 16,384 items answer in parts of ~20 KB, several per chunk, on both workers at once: the
        // worker's pipe fills while its parts are still queued, and each part must still leave.
        // (From 100: the fixture's Square dies at 13.)
        const many = Array.from({ length: 65_536 }, (_, i) => 100 + i)
        const results = yield* ProcessPool.map(Square, many, { chunkSize: 16_384 })
        expect(results).toHaveLength(many.length)
        expect(results.every((result, i) => result === many[i]! * many[i]!)).toBe(true)
      }),
    { timeout: 20_000 }
  )

  it.effect("unordered map returns every result", () =>
    Effect.gen(function*() {
      const results = yield* ProcessPool.map(Square, inputs, { ordered: false, chunkSize: 10 })
      expect(results.slice().sort((a, b) => a - b)).toEqual(squares)
    }))

  it.effect("map fails fast with the first failure", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ProcessPool.map(Square, [1, 2, -5, 4], { chunkSize: 2 }))
      assert.instanceOf(error, Negative)
      expect(error.n).toBe(-5)
    }))

  it.effect("plain data arrives as its Schema says: extra keys dropped, NaN and Infinity kept, bad values refused", () =>
    Effect.gen(function*() {
      const payload = { n: 2, name: "x", tags: ["t"], kind: "a" as const }
      const withExtra = { ...payload, extra: 1 } as typeof payload
      class Instance {
        n = 4
        name = "y"
        tags = []
        kind = "b" as const
      }
      const expected = { keys: ["n", "name", "tags", "kind"], n: 4 }
      expect(yield* ProcessPool.submit(Plain, payload)).toEqual(expected)
      expect(yield* ProcessPool.submit(Plain, withExtra)).toEqual(expected)
      expect(yield* ProcessPool.submit(Plain, new Instance())).toEqual({ ...expected, n: 8 })
      // Non-finite numbers are not JSON: they take the Schema's JSON codec, alone and in chunks.
      expect((yield* ProcessPool.submit(Plain, { ...payload, n: NaN })).n).toBeNaN()
      expect(yield* ProcessPool.map(Square, [Infinity, 3, NaN], { chunkSize: 3 })).toEqual([Infinity, 9, NaN])
      const items = [payload, withExtra, { ...payload, n: -Infinity }]
      expect(yield* ProcessPool.map(Plain, items, { chunkSize: 3 })).toEqual([
        expected,
        expected,
        { ...expected, n: -Infinity }
      ])
      const bad = { ...payload, kind: "c" } as unknown as typeof payload
      const error = yield* Effect.flip(ProcessPool.map(Plain, [payload, bad], { chunkSize: 2 }))
      assert.instanceOf(error, PoolError.SerializationError)
      expect(error.issue).toContain("kind")
    }))

  it.effect("a bad payload in map fails with SerializationError", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ProcessPool.map(Square, [1, "x" as unknown as number], { chunkSize: 2 }))
      assert.instanceOf(error, PoolError.SerializationError)
    }))

  it.effect("mapExits returns every item's outcome", () =>
    Effect.gen(function*() {
      for (const chunkSize of [1, 3] as const) {
        const exits = yield* ProcessPool.mapExits(Square, [2, -1, 13, 4], { chunkSize })
        expect(exits.length).toBe(4)
        expect(exits[0]).toEqual(Exit.succeed(4))
        assert(Exit.isFailure(exits[1]))
        assert.instanceOf(Cause.squash(exits[1].cause), Negative)
        assert(Exit.isFailure(exits[2]))
        expect(Cause.hasDies(exits[2].cause)).toBe(true)
        expect(exits[3]).toEqual(Exit.succeed(16))
      }
    }))

  it.effect("stream over an iterable is lazy: it pulls only what its window allows", () =>
    Effect.gen(function*() {
      let pulled = 0
      function* naturals() {
        for (let i = 14;; i++) {
          pulled++
          yield i
        }
      }
      const first = yield* ProcessPool.stream(Square, naturals(), { chunkSize: 4, concurrency: 2 }).pipe(
        Stream.take(10),
        Stream.runCollect
      )
      expect(Array.from(first)).toEqual(Array.from({ length: 10 }, (_, i) => (i + 14) ** 2))
      // An infinite input: only a bounded prefix was read.
      expect(pulled).toBeLessThan(100)
    }))

  it.effect("stream over a Stream, ordered and unordered", () =>
    Effect.gen(function*() {
      const ordered = yield* ProcessPool.stream(Square, Stream.range(14, 213)).pipe(Stream.runCollect)
      expect(Array.from(ordered)).toEqual(Array.from({ length: 200 }, (_, i) => (i + 14) ** 2))
      const unordered = yield* ProcessPool.stream(Square, Stream.range(14, 213), { ordered: false }).pipe(
        Stream.runCollect
      )
      expect(Array.from(unordered).sort((a, b) => a - b)).toEqual(Array.from(ordered))
    }))

  it.effect("stream fails with a typed failure", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        ProcessPool.stream(Square, [1, 2, -7], { chunkSize: 1 }).pipe(Stream.runCollect)
      )
      assert.instanceOf(error, Negative)
    }))
})

describe("layer", () => {
  it.live("size defaults to the available parallelism", () =>
    Effect.gen(function*() {
      const stats = yield* ProcessPool.ProcessPool.use((pool) => pool.stats)
      const { availableParallelism } = yield* Effect.promise(() => import("node:os"))
      expect(stats.workers.length).toBe(availableParallelism())
    }).pipe(Effect.provide(poolLayer({ size: undefined }))))
})
