/**
 * The pool's scheduling rules on Effect's TestClock: grace periods, back-off,
 * hang detection, idle shrink and drain are decided by the clock the pool
 * runs on, so these tests move time by hand, in milliseconds, while the
 * workers are real processes.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/testing/TestClock"
import * as fs from "node:fs"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { BlockLater, Exit as ExitTask, Sleep, Spin, Square } from "./fixtures/tasks.ts"
import { fixture, isAlive, tempFile, waitUntil } from "./helpers.ts"

/** Waits on real time: the test clock only moves when told to. */
const live = <A, E, R>(effect: Effect.Effect<A, E, R>) => TestClock.withLive(effect)
const realSleep = (ms: number) => live(Effect.sleep(ms))

const pool = (options: Partial<ProcessPool.Options>) =>
  ProcessPool.make({ worker: fixture("worker.ts"), size: 1, inheritStderr: false, ...options })

const pids = (p: ProcessPool.ProcessPool["Service"]) => Effect.map(p.stats, (s) => s.workers.map((w) => w.pid))

describe("scheduling rules, on the test clock", () => {
  it.effect("interruptGrace: a task that ignores its interruption is killed when the grace has passed, not before", () =>
    Effect.gen(function*() {
      const p = yield* pool({ interruptGrace: "10 seconds", hangTimeout: Duration.infinity })
      const [pid] = yield* pids(p)
      const task = yield* Effect.forkChild(p.submit(Spin, 60_000))
      yield* realSleep(200)
      const interrupting = yield* Effect.forkChild(Fiber.interrupt(task))
      yield* realSleep(300)
      yield* TestClock.adjust("9999 millis")
      yield* realSleep(300)
      expect(isAlive(pid)).toBe(true)
      yield* TestClock.adjust("1 millis")
      yield* live(waitUntil("the runaway worker to be killed", () => !isAlive(pid)))
      yield* Fiber.join(interrupting)
      yield* live(waitUntil("a replacement", Effect.map(pids(p), (all) => all.length === 1 && all[0] !== pid)))
    }).pipe(Effect.scoped))

  it.effect("back-off: a replacement that fails to start is tried again after 100, then 200 ms, then the pool breaks", () =>
    Effect.gen(function*() {
      const counter = tempFile("starts")
      process.env.FLAKY_COUNTER = counter
      const starts = () => Number(fs.readFileSync(counter, "utf8"))
      const p = yield* pool({ worker: fixture("flaky-start.ts"), maxStartFailures: 3, hangTimeout: Duration.infinity })
      assert.instanceOf(yield* Effect.flip(p.submit(ExitTask, 1)), PoolError.WorkerCrashed)
      // The first replacement starts at once, and fails.
      yield* live(waitUntil("the second start", () => starts() === 2))
      const waiting = yield* Effect.forkChild(Effect.flip(p.submit(Square, 2)))
      yield* realSleep(500)
      expect(starts()).toBe(2)
      yield* TestClock.adjust("99 millis")
      yield* realSleep(300)
      expect(starts()).toBe(2)
      yield* TestClock.adjust("1 millis")
      yield* live(waitUntil("the third start", () => starts() === 3))
      yield* realSleep(500)
      yield* TestClock.adjust("199 millis")
      yield* realSleep(300)
      expect(starts()).toBe(3)
      yield* TestClock.adjust("1 millis")
      yield* live(waitUntil("the fourth start", () => starts() === 4))
      // Three failed starts in a row: the queued task ends with the start error, and nothing respawns.
      const error = yield* Fiber.join(waiting)
      assert.instanceOf(error, PoolError.WorkerStartError)
      expect(error.message).toContain("failed to start 3 times in a row")
      yield* TestClock.adjust("1 minute")
      yield* realSleep(300)
      expect(starts()).toBe(4)
    }).pipe(Effect.scoped, Effect.ensuring(Effect.sync(() => delete process.env.FLAKY_COUNTER))))

  it.effect("hang detection: an idle worker whose event loop stops answering is killed after hangTimeout, not before", () =>
    Effect.gen(function*() {
      const p = yield* pool({ hangTimeout: "10 seconds", heartbeatInterval: "1 second" })
      const pid = yield* p.submit(BlockLater, 5_000)
      // Its event loop is blocked from 20 ms after the task ended, for 5 real seconds.
      yield* realSleep(100)
      yield* TestClock.adjust("1 second") // the heartbeat pings it; no answer can come
      for (let i = 0; i < 10; i++) yield* TestClock.adjust("1 second")
      yield* realSleep(200)
      expect(isAlive(pid)).toBe(true)
      yield* TestClock.adjust("1 second")
      yield* live(waitUntil("the hung worker to be killed", () => !isAlive(pid)))
      yield* live(waitUntil("its death counted", Effect.map(p.stats, (s) => s.crashes === 1)))
    }).pipe(Effect.scoped))

  it.effect("idle shrink: a worker above minSize is stopped once idle for idleTimeout, not before", () =>
    Effect.gen(function*() {
      const p = yield* pool({ size: undefined, minSize: 1, maxSize: 2, idleTimeout: "30 seconds" })
      yield* Effect.forEach(Array.from({ length: 8 }), () => p.submit(Sleep, { ms: 300 }), { concurrency: "unbounded" })
      expect((yield* pids(p)).length).toBe(2)
      // A second at a time, with real time between for the workers to answer their pings.
      for (let i = 0; i < 29; i++) {
        yield* TestClock.adjust("1 second")
        yield* realSleep(20)
      }
      expect((yield* pids(p)).length).toBe(2)
      yield* TestClock.adjust("1 second")
      yield* realSleep(20)
      yield* TestClock.adjust("1 second")
      yield* live(waitUntil("one worker left", Effect.map(pids(p), (all) => all.length === 1)))
    }).pipe(Effect.scoped))

  it.effect("drain: closing waits for running tasks until shutdownTimeout, then ends them and stops the workers", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const p = yield* Scope.provide(pool({ shutdownTimeout: "20 seconds", hangTimeout: Duration.infinity }), scope)
      const [pid] = yield* pids(p)
      const task = yield* Effect.forkChild(Effect.exit(p.submit(Sleep, { ms: 60_000 })))
      yield* realSleep(200)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* realSleep(300)
      yield* TestClock.adjust("19 seconds")
      yield* realSleep(300)
      expect(closing.pollUnsafe()).toBeUndefined()
      expect(isAlive(pid)).toBe(true)
      yield* TestClock.adjust("1 second")
      const exit = yield* Fiber.join(task)
      assert(Exit.isFailure(exit))
      assert.instanceOf(Cause.squash(exit.cause), PoolError.PoolClosed)
      yield* Fiber.join(closing)
      expect(isAlive(pid)).toBe(false)
    }))
})
