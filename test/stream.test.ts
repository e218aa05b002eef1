/**
 * Streaming tasks, on real processes: one task, many results, with back
 * pressure across the pipe.
 */
import { assert, describe, expect, it, layer } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import {
  BadItem,
  Count,
  CountBytes,
  CrashAfterItem,
  CrashFirst,
  DieAfter,
  Endless,
  FailAfter,
  PidThenSpin,
  PidThenWait,
  WhichPid
} from "./fixtures/streams.ts"
import { Negative } from "./fixtures/tasks.ts"
import { fixture, isAlive, poolLayer, stats, tempFile, waitUntil, workerPids } from "./helpers.ts"

const streams = (options: Partial<ProcessPool.Options> = {}) =>
  poolLayer({ worker: fixture("streams.ts"), size: 2, ...options })

/** Runs a stream to its end, keeping the items that came before its failure. */
const collect = <A, E>(stream: Stream.Stream<A, E, ProcessPool.ProcessPool>) =>
  Effect.gen(function*() {
    const items: Array<A> = []
    const exit = yield* Effect.exit(Stream.runForEach(stream, (item) => Effect.sync(() => items.push(item))))
    return { items, exit }
  })

const producedSoFar = (file: string): number => fs.existsSync(file) ? Number(fs.readFileSync(file, "utf8")) : 0

layer(streams({ streamWindow: 16, interruptGrace: 300 }), { excludeTestServices: true })("streaming tasks", (it) => {
  it.effect("every item crosses through the success Schema, in order, in chunks", () =>
    Effect.gen(function*() {
      expect(yield* Stream.runCollect(ProcessPool.submit(Count, 1_000))).toEqual(
        Array.from({ length: 1_000 }, (_, i) => i)
      )
      const many = yield* Stream.runCollect(ProcessPool.submit(Count, 100_000))
      expect(many.length).toBe(100_000)
      expect(many[99_999]).toBe(99_999)
      const bytes = yield* Stream.runCollect(ProcessPool.submit(CountBytes, 300))
      expect(bytes.length).toBe(300)
      assert.instanceOf(bytes[299], Uint8Array)
      expect(Array.from(bytes[299])).toEqual([299 % 256, 1, 2])
      expect(yield* Stream.runCollect(ProcessPool.submit(Count, 0))).toEqual([])
    }))

  it.effect("is lazy: nothing is sent until the stream is pulled", () =>
    Effect.gen(function*() {
      const file = tempFile("lazy")
      const stream = ProcessPool.submit(Endless, file)
      yield* Effect.sleep(300)
      expect(fs.existsSync(file)).toBe(false)
      expect((yield* stats).inflight).toBe(0)
      expect(yield* Stream.runCollect(Stream.take(stream, 3))).toEqual([0, 1, 2])
    }))

  it.effect("a slow consumer of an endless stream holds the worker to the window", () =>
    Effect.gen(function*() {
      const file = tempFile("endless")
      const taken = yield* ProcessPool.submit(Endless, file, { window: 16 }).pipe(
        Stream.tap(() => Effect.sleep(10)),
        Stream.take(40),
        Stream.runCollect
      )
      expect(taken).toEqual(Array.from({ length: 40 }, (_, i) => i))
      const produced = producedSoFar(file)
      // 40 taken, 16 at most waiting for the consumer, and the one being sent when the window closed.
      expect(produced).toBeGreaterThanOrEqual(40)
      expect(produced).toBeLessThanOrEqual(40 + 16 + 1)
    }))

  it.effect("ending early interrupts the worker's stream, its finalizer runs, and the worker goes on", () =>
    Effect.gen(function*() {
      const file = tempFile("early")
      const pids = yield* workerPids
      expect(yield* Stream.runCollect(Stream.take(ProcessPool.submit(Endless, file), 5))).toEqual([0, 1, 2, 3, 4])
      // The stream's scope closed only after the worker stopped its stream.
      const end = fs.readFileSync(`${file}.end`, "utf8")
      expect(end).toMatch(/^finalized \d+$/)
      expect(pids).toContain(Number(end.split(" ")[1]))
      expect(yield* workerPids).toEqual(pids)
      expect(yield* Stream.runCollect(ProcessPool.submit(Count, 3))).toEqual([0, 1, 2])
      expect((yield* stats).crashes).toBe(0)
    }))

  it.effect("an error downstream, or interrupting the consumer, stops the worker's stream too", () =>
    Effect.gen(function*() {
      const failing = tempFile("downstream")
      const exit = yield* Effect.exit(
        ProcessPool.submit(Endless, failing).pipe(
          Stream.mapEffect((n) => n === 10 ? Effect.fail("enough") : Effect.succeed(n)),
          Stream.runDrain
        )
      )
      assert(Exit.isFailure(exit))
      expect(fs.readFileSync(`${failing}.end`, "utf8")).toMatch(/^finalized/)

      const interrupted = tempFile("interrupted")
      const fiber = yield* Effect.forkChild(Stream.runDrain(ProcessPool.submit(Endless, interrupted)))
      yield* waitUntil("items produced", () => producedSoFar(interrupted) > 20)
      yield* Fiber.interrupt(fiber)
      expect(fs.readFileSync(`${interrupted}.end`, "utf8")).toMatch(/^finalized/)
    }))

  it.effect("a typed failure mid-stream comes after the items before it, as its class", () =>
    Effect.gen(function*() {
      const { exit, items } = yield* collect(ProcessPool.submit(FailAfter, -4))
      expect(items).toEqual([1, 2, 3])
      assert(Exit.isFailure(exit))
      const error = Cause.squash(exit.cause)
      assert.instanceOf(error, Negative)
      expect(error.n).toBe(-4)
    }))

  it.effect("a defect mid-stream keeps its remote stack", () =>
    Effect.gen(function*() {
      const { exit, items } = yield* collect(ProcessPool.submit(DieAfter, 0))
      expect(items).toEqual([1, 2])
      assert(Exit.isFailure(exit))
      assert(Cause.hasDies(exit.cause))
      const defect = Cause.squash(exit.cause)
      assert.instanceOf(defect, Error)
      expect(defect.name).toBe("RangeError")
      expect(defect.message).toBe("the stream broke")
      expect(defect.stack).toContain("fixtures/streams.ts")
    }))

  it.effect("an item that does not fit its Schema ends the stream with a SerializationError", () =>
    Effect.gen(function*() {
      const { exit, items } = yield* collect(ProcessPool.submit(BadItem, 0))
      expect(items).toEqual([1, 2])
      assert(Exit.isFailure(exit))
      const error = Cause.squash(exit.cause)
      assert.instanceOf(error, PoolError.SerializationError)
      expect(error.direction).toBe("result")
    }))

  it.effect("timeout bounds the whole stream, and a cooperative stream is stopped without a kill", () =>
    Effect.gen(function*() {
      const pids = yield* workerPids
      const { exit, items } = yield* collect(ProcessPool.submit(PidThenWait, 10_000, { timeout: "300 millis" }))
      expect(items.length).toBe(1)
      assert(Exit.isFailure(exit))
      assert.instanceOf(Cause.squash(exit.cause), PoolError.TaskTimeout)
      expect(yield* workerPids).toEqual(pids)
    }))

  it.effect("a stream that ignores interruption is killed after interruptGrace, and replaced", () =>
    Effect.gen(function*() {
      const [pid] = yield* Stream.runCollect(Stream.take(ProcessPool.submit(PidThenSpin, 30_000), 1))
      // The consumer's scope closed once the worker was killed; a spin of 30 s left to finish would leave it alive.
      yield* waitUntil("the runaway worker to die", () => !isAlive(pid))
      yield* waitUntil(
        "a replacement",
        Effect.map(stats, (s) => s.workers.filter((w) => w.state === "ready").length === 2)
      )
      expect(yield* Stream.runCollect(ProcessPool.submit(Count, 2))).toEqual([0, 1])
    }))

  it.effect("a crash mid-stream delivers the items that arrived, then WorkerCrashed", () =>
    Effect.gen(function*() {
      const items: Array<number> = []
      const fiber = yield* Effect.forkChild(Effect.exit(
        Stream.runForEach(ProcessPool.submit(PidThenWait, 30_000), (n) => Effect.sync(() => items.push(n)))
      ))
      yield* waitUntil("the first item", () => items.length === 1)
      process.kill(items[0], "SIGKILL")
      const exit = yield* Fiber.join(fiber)
      expect(items.length).toBe(1)
      assert(Exit.isFailure(exit))
      const error = Cause.squash(exit.cause)
      assert.instanceOf(error, PoolError.WorkerCrashed)
      expect(error.pid).toBe(items[0])
      expect(error.signal).toBe("SIGKILL")
    }))

  it.effect("a streaming task is retried only while no item has been delivered", () =>
    Effect.gen(function*() {
      expect(yield* Stream.runCollect(ProcessPool.submit(CrashFirst, tempFile("crash-first")))).toEqual([7, 8, 9])
      const { exit, items } = yield* collect(ProcessPool.submit(CrashAfterItem, 0))
      // Its one item arrived once: the crash after it was not retried.
      expect(items.length).toBe(1)
      assert(Exit.isFailure(exit))
      assert.instanceOf(Cause.squash(exit.cause), PoolError.WorkerCrashed)
    }))

  it.effect("no task is sent ahead to a worker whose stream waits for its consumer", () =>
    Effect.gen(function*() {
      const file = tempFile("paused")
      // Takes one item, then holds the stream open without pulling for a while.
      const paused = yield* Effect.forkChild(
        ProcessPool.submit(Endless, file).pipe(
          Stream.tap(() => Effect.sleep(2_000)),
          Stream.take(1),
          Stream.runDrain
        )
      )
      yield* waitUntil("the stream to run", () => producedSoFar(file) > 0)
      const streaming = (yield* stats).workers.find((w) => w.inflight > 0)!.pid
      const answers = yield* Effect.forEach(Array.from({ length: 6 }), () => ProcessPool.submit(WhichPid), {
        concurrency: "unbounded"
      })
      // All answered by the other worker: none was sent ahead to wait behind the paused stream.
      expect(answers.every((pid) => pid !== streaming)).toBe(true)
      yield* Fiber.interrupt(paused)
    }))

  it.effect("200 concurrent streams each get their own items", () =>
    Effect.gen(function*() {
      const results = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i),
        (i) => Stream.runCollect(ProcessPool.submit(Count, i % 50)),
        { concurrency: "unbounded" }
      )
      results.forEach((items, i) => expect(items).toEqual(Array.from({ length: i % 50 }, (_, j) => j)))
      expect((yield* stats).inflight).toBe(0)
    }))
})

describe("streaming tasks, by type", () => {
  it("map, mapExits and stream refuse a streaming task", () => {
    // These lines only type-check while the errors hold.
    // @ts-expect-error: a streaming task cannot be mapped
    void (() => ProcessPool.map(Count, [1]))
    // @ts-expect-error: a streaming task cannot be mapped
    void (() => ProcessPool.mapExits(Count, [1]))
    // @ts-expect-error: a streaming task cannot be mapped
    void (() => ProcessPool.stream(Count, [1]))
    // submit returns a Stream for a streaming task, an Effect for any other.
    const items: Stream.Stream<number, PoolError.PoolError, ProcessPool.ProcessPool> = ProcessPool.submit(Count, 3)
    // @ts-expect-error: not an Effect
    const notEffect: Effect.Effect<number, PoolError.PoolError, ProcessPool.ProcessPool> = ProcessPool.submit(Count, 3)
    expect(Stream.isStream(items) && !Effect.isEffect(notEffect)).toBe(true)
  })
})
