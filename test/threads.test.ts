/**
 * What only worker threads do: they are threads of this process, a thread
 * that exits, throws outside a task, passes its heap limit or never yields
 * fails only its own task and is replaced, byte arrays of a task declared
 * with `transfer` are moved rather than copied, and the options a thread
 * cannot honour are refused. What every backend does is in
 * conformance.test.ts, which runs on threads too.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { isMainThread } from "node:worker_threads"
import { Square } from "../examples/square.ts"
import type { WorkerCrashed } from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { Traced } from "./fixtures/tasks.ts"
import {
  Allocate,
  CompileCacheDir,
  EnvOf,
  Exit as ExitTask,
  Moved,
  Sleep,
  Spin,
  ThreadId,
  Uncaught
} from "./fixtures/tasks.ts"
import { fixture, waitUntil } from "./helpers.ts"

const threads = (options: Partial<ProcessPool.Options> = {}) =>
  ProcessPool.make({
    worker: fixture("thread-worker.ts"),
    isolation: "thread",
    size: 1,
    inheritStderr: false,
    ...options
  })

/** The failure of an exit that must be a `WorkerCrashed`. */
const crashOf = <A, E>(exit: Exit.Exit<A, E>): WorkerCrashed => {
  assert(Exit.isFailure(exit), "the task failed")
  const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")?.error as WorkerCrashed | undefined
  assert(error?._tag === "WorkerCrashed", `WorkerCrashed, not ${JSON.stringify(exit.cause)}`)
  return error
}

describe("threads", () => {
  it.live("each worker is a thread of this process, named by its thread id", () =>
    Effect.gen(function*() {
      const pool = yield* threads({ size: 2 })
      const ids = yield* Effect.forEach([100, 100], (ms) => pool.submit(Sleep, { ms }), { concurrency: 2 })
      const { workers } = yield* pool.stats
      expect(isMainThread).toBe(true)
      expect(new Set(ids).size).toBe(2)
      expect(ids.every((id) => id > 0)).toBe(true)
      expect(workers.map((worker) => worker.pid).sort()).toEqual([...ids].sort())
    }).pipe(Effect.scoped))

  it.live("process.exit in a handler ends only its thread: WorkerCrashed with the exit code, and a new thread", () =>
    Effect.gen(function*() {
      const pool = yield* threads()
      const before = yield* pool.submit(ThreadId)
      const crash = crashOf(yield* Effect.exit(pool.submit(ExitTask, 3)))
      expect(crash.exitCode).toBe(3)
      expect(crash.pid).toBe(before)
      const after = yield* pool.submit(ThreadId)
      expect(after).not.toBe(before)
      expect((yield* pool.stats).crashes).toBe(1)
    }).pipe(Effect.scoped))

  it.live("an uncaught error in the thread is WorkerCrashed that says it, and the thread is replaced", () =>
    Effect.gen(function*() {
      const pool = yield* threads()
      const before = yield* pool.submit(ThreadId)
      const crash = crashOf(yield* Effect.exit(pool.submit(Uncaught, "thrown from a timer")))
      expect(crash.reason).toContain("an uncaught error in the thread: Error: thrown from a timer")
      expect(crash.message).toContain("thrown from a timer")
      expect(yield* pool.submit(ThreadId)).not.toBe(before)
      // `throw null` is no Error: said all the same.
      const thrownNull = crashOf(yield* Effect.exit(pool.submit(Uncaught, "null")))
      expect(thrownNull.reason).toBe("an uncaught error in the thread: null")
    }).pipe(Effect.scoped))

  it.live(
    "a thread past maxWorkerMemory dies: LimitExceeded names the limit, and the next task runs",
    () =>
      Effect.gen(function*() {
        const pool = yield* threads({ maxWorkerMemory: 64 * 1024 * 1024 })
        expect(yield* pool.submit(Allocate, 8)).toBe(8)
        const error = yield* Effect.flip(pool.submit(Allocate, 512))
        expect(error).toMatchObject({ _tag: "LimitExceeded", limit: "maxWorkerMemory", value: 64 * 1024 * 1024 })
        // A fresh thread, with a fresh heap.
        expect(yield* pool.submit(Allocate, 1)).toBe(1)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live("a task that never yields is ended with terminate() after interruptGrace, and its thread replaced", () =>
    Effect.gen(function*() {
      const pool = yield* threads({ interruptGrace: 300 })
      const before = yield* pool.submit(ThreadId)
      const started = Date.now()
      const exit = yield* Effect.exit(pool.submit(Spin, 60_000, { timeout: 200 }))
      assert(Exit.isFailure(exit))
      expect(exit.cause.reasons.map((reason) => reason._tag === "Fail" && reason.error._tag)).toContain("TaskTimeout")
      // The timeout, then the grace: never the minute the loop would take.
      expect(Date.now() - started).toBeLessThan(5_000)
      const after = yield* pool.submit(ThreadId)
      expect(after).not.toBe(before)
    }).pipe(Effect.scoped))

  it.live("a task declared with transfer moves its byte arrays both ways: gone from the sender, never copied", () =>
    Effect.gen(function*() {
      const pool = yield* threads()
      const size = 1024 * 1024
      const bytes = new Uint8Array(size).map((_, i) => i % 251)
      const expected = bytes.reduce((a, b) => a + b, 0)
      const result = yield* pool.submit(Moved, bytes)
      // Moved to the thread: this side's array is empty now, and refused if passed again, never sent empty.
      expect(bytes.byteLength).toBe(0)
      const again = yield* Effect.flip(pool.submit(Moved, bytes))
      assert(again._tag === "SerializationError")
      expect(again.issue).toContain("moved away by an earlier transfer")
      expect(result.sum).toBe(expected)
      expect(result.bytes.length).toBe(size)
      expect(result.bytes[0]).toBe(1)
      expect(result.bytes[size - 1]).toBe(((size - 1) % 251 + 1) & 255)
      // A view of part of a larger buffer is copied: the rest of the buffer stays here.
      const whole = new Uint8Array(2 * size).fill(7)
      const part = whole.subarray(0, size)
      const partResult = yield* pool.submit(Moved, part)
      expect(whole.byteLength).toBe(2 * size)
      expect(part[0]).toBe(7)
      expect(partResult.sum).toBe(7 * size)
      // The items of a map as well, in chunks or one by one.
      for (const chunkSize of [1, 2] as const) {
        const items = [new Uint8Array(size).fill(2), new Uint8Array(size).fill(3)]
        const sums = yield* pool.map(Moved, items, { chunkSize })
        expect(sums.map((result) => result.sum)).toEqual([2 * size, 3 * size])
        expect(items.map((item) => item.byteLength)).toEqual([0, 0])
      }
      // A worker process takes the array from the caller as well: one behaviour on both.
      const processes = yield* ProcessPool.make({ worker: fixture("thread-worker.ts"), size: 1, inheritStderr: false })
      const sent = new Uint8Array(size).fill(1)
      expect((yield* processes.submit(Moved, sent)).sum).toBe(size)
      expect(sent.byteLength).toBe(0)
    }).pipe(Effect.scoped))

  it.live("a task whose bytes were moved to a thread that died before starting it fails, never sent empty", () =>
    Effect.gen(function*() {
      // One thread, and tasks sent ahead to it while it runs one that exits.
      const pool = yield* threads({ prefetch: 4 })
      const bytes = () => new Uint8Array(256 * 1024).fill(1)
      const exits = yield* Effect.all([
        Effect.exit(pool.submit(ExitTask, 5)),
        Effect.exit(pool.submit(Moved, bytes())),
        Effect.exit(pool.submit(Moved, bytes()))
      ], { concurrency: "unbounded" })
      expect(crashOf(exits[0]).exitCode).toBe(5)
      for (const exit of [exits[1], exits[2]]) {
        // Either it ran before the thread died, or it fails and says why: never a wrong sum.
        if (Exit.isSuccess(exit)) expect(exit.value.sum).toBe(256 * 1024)
        else expect(crashOf(exit).reason).toContain("moved to that thread")
      }
      expect((yield* pool.submit(Moved, bytes())).sum).toBe(256 * 1024)
    }).pipe(Effect.scoped))

  it.live("recycling and idle shrink: a thread retires after maxTasksPerWorker, and idle ones stop", () =>
    Effect.gen(function*() {
      const pool = yield* threads({ maxTasksPerWorker: 2 })
      const ids = []
      for (let i = 0; i < 4; i++) ids.push(yield* pool.submit(ThreadId))
      expect(new Set(ids).size).toBe(2)
      const elastic = yield* threads({ minSize: 0, maxSize: 2, idleTimeout: 200 })
      yield* elastic.submit(ThreadId)
      yield* waitUntil("the idle thread to stop", Effect.map(elastic.stats, (stats) => stats.workers.length === 0))
    }).pipe(Effect.scoped))

  it.live("a handler's span is a child of the caller's, across the thread", () =>
    Effect.gen(function*() {
      const pool = yield* ProcessPool.make({
        worker: fixture("worker.ts"),
        isolation: "thread",
        size: 1,
        inheritStderr: false
      })
      const [span, seen] = yield* Effect.all([Effect.currentSpan, pool.submit(Traced, 1)]).pipe(
        Effect.withSpan("caller")
      )
      expect(seen.traceId).toBe(span.traceId)
      expect(seen.parentSpanId).toBe(span.spanId)
    }).pipe(Effect.scoped))

  it.live("a module that throws on import is a WorkerStartError with its error", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(threads({ worker: fixture("throws-on-import.ts") }))
      assert(Exit.isFailure(exit))
      const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")?.error
      assert(error?._tag === "WorkerStartError")
      expect(error.message).toContain("threw while it was imported")
    }).pipe(Effect.scoped))
})

describe("the README's example on threads", () => {
  it.live("square.ts runs unchanged with isolation: \"thread\"", () =>
    Effect.gen(function*() {
      const pool = yield* ProcessPool.make({
        worker: new URL("../examples/square.ts", import.meta.url),
        isolation: "thread",
        size: 2
      })
      expect(yield* pool.map(Square, [1, 2, 3, 4, 5])).toEqual([1, 4, 9, 16, 25])
    }).pipe(Effect.scoped))
})

describe("thread options", () => {
  const refused = (options: Partial<ProcessPool.Options>, option: string, words: string) =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(threads(options))
      assert(Exit.isFailure(exit))
      const error = exit.cause.reasons.find((reason) => reason._tag === "Fail")?.error
      assert(error?._tag === "InvalidOption", `InvalidOption, not ${String(error)}`)
      expect(error.option).toBe(option)
      expect(error.message).toContain(words)
    }).pipe(Effect.scoped)

  it.live("what means nothing for a thread is refused, and says why", () =>
    Effect.gen(function*() {
      yield* refused({ processGroups: true }, "processGroups", "no process group of their own")
      yield* refused({ processGroups: false }, "processGroups", "no process group of their own")
      yield* refused({ execArgv: ["--title=pool"] }, "execArgv", "--title=pool")
      yield* refused({ isolation: "fiber" as never }, "isolation", `"process" or "thread"`)
    }))

  it.live("a thread keeps Node's compile cache in the pool's compileCache directory; none with false", () =>
    Effect.gen(function*() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "thread-cache-"))
      try {
        const kept = yield* Effect.scoped(
          Effect.flatMap(threads({ compileCache: dir }), (pool) => pool.submit(CompileCacheDir))
        )
        expect(kept?.startsWith(dir)).toBe(true)
        // A thread has no cache of its own: only what its environment names (the program's main thread has none here).
        const { NODE_COMPILE_CACHE: _, ...env } = process.env
        const none = yield* Effect.scoped(
          Effect.flatMap(threads({ compileCache: false, env }), (pool) => pool.submit(CompileCacheDir))
        )
        expect(none).toBe(null)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.live("env: a variable set to undefined is unset in a thread, as in a process; the others are set", () =>
    Effect.gen(function*() {
      for (const isolation of ["process", "thread"] as const) {
        const pool = yield* threads({ isolation, env: { ...process.env, POOL_UNSET: undefined, POOL_SET: "yes" } })
        expect([yield* pool.submit(EnvOf, "POOL_UNSET"), yield* pool.submit(EnvOf, "POOL_SET")]).toEqual([null, "yes"])
      }
    }).pipe(Effect.scoped))

  it.live("flags a thread takes are taken", () =>
    Effect.gen(function*() {
      const pool = yield* threads({ execArgv: ["--no-deprecation", "--enable-source-maps"] })
      expect(yield* pool.submit(ThreadId)).toBeGreaterThan(0)
    }).pipe(Effect.scoped))
})
