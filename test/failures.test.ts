import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as fs from "node:fs"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { Exit as ExitTask, Negative, Pid, Sleep, Spin, Square } from "./fixtures/tasks.ts"
import { busyWorker, isAlive, poolLayer, stats, tempFile, waitUntil, workerPids } from "./helpers.ts"

describe("crash", () => {
  it.live("kill -9 of a busy worker fails only its task, with a WorkerCrashed that names it", () =>
    Effect.gen(function*() {
      const victim = yield* Effect.forkChild(ProcessPool.submit(Spin, 30_000))
      const pid = yield* busyWorker
      const others = yield* Effect.forkChild(
        Effect.forEach(Array.from({ length: 200 }, (_, i) => i + 20), (n) => ProcessPool.submit(Square, n), {
          concurrency: "unbounded"
        })
      )
      process.kill(pid, "SIGKILL")
      const exit = yield* Fiber.await(victim)
      assert(Exit.isFailure(exit))
      const error = Cause.squash(exit.cause)
      assert.instanceOf(error, PoolError.WorkerCrashed)
      expect(error.pid).toBe(pid)
      expect(error.signal).toBe("SIGKILL")
      expect(error.exitCode).toBe(null)
      expect(error.task).toBe("Spin")
      expect(error.message).toContain(`Worker ${pid} was killed by SIGKILL`)
      // Every other task completes normally.
      const results = yield* Fiber.join(others)
      expect(results).toEqual(Array.from({ length: 200 }, (_, i) => (i + 20) ** 2))
      // The worker was replaced.
      yield* waitUntil(
        "a replacement worker",
        Effect.map(stats, (s) => s.workers.filter((w) => w.state === "ready").length === 2)
      )
      const pids = yield* workerPids
      expect(pids).not.toContain(pid)
      expect(yield* ProcessPool.submit(Square, 5)).toBe(25)
    }).pipe(Effect.provide(poolLayer())))

  it.live("a task that exits its worker fails with its exit code; tasks sent ahead are requeued, not failed", () =>
    Effect.gen(function*() {
      // One worker, two tasks in flight: the second waits in the worker behind the first.
      const crashing = yield* Effect.forkChild(ProcessPool.submit(ExitTask, 3))
      const queuedBehind = yield* Effect.forkChild(ProcessPool.submit(Pid, { ms: 0 }))
      const exit = yield* Fiber.await(crashing)
      assert(Exit.isFailure(exit))
      const error = Cause.squash(exit.cause)
      assert.instanceOf(error, PoolError.WorkerCrashed)
      expect(error.exitCode).toBe(3)
      expect(error.signal).toBe(null)
      // The task sent ahead ran in the replacement.
      const pid = yield* Fiber.join(queuedBehind)
      expect(pid).not.toBe(error.pid)
      expect((yield* stats).crashes).toBe(1)
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))
})

describe("interruption", () => {
  it.live("a queued task that is interrupted is removed from the queue", () =>
    Effect.gen(function*() {
      const blocker = yield* Effect.forkChild(ProcessPool.submit(Sleep, { ms: 400 }))
      // Window of 2 per worker: the 2nd is sent ahead, the 3rd waits in the parent's queue.
      const ahead = yield* Effect.forkChild(ProcessPool.submit(Sleep, { ms: 0 }))
      const file = tempFile("never")
      const queued = yield* Effect.forkChild(ProcessPool.submit(Sleep, { ms: 0, file }))
      yield* Effect.sleep(50)
      expect((yield* stats).queued).toBe(1)
      yield* Fiber.interrupt(queued)
      expect((yield* stats).queued).toBe(0)
      yield* Fiber.join(blocker)
      yield* Fiber.join(ahead)
      const done = (yield* stats).workers.reduce((n, w) => n + w.tasksDone, 0)
      expect(done).toBe(2)
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))

  it.live("a running task is interrupted in its worker, and its finalizers run", () =>
    Effect.gen(function*() {
      const file = tempFile("finalized")
      const fiber = yield* Effect.forkChild(ProcessPool.submit(Sleep, { ms: 30_000, file }))
      yield* Effect.sleep(200)
      const pids = yield* workerPids
      yield* Fiber.interrupt(fiber)
      // By the time interruption returns, the remote finalizer has run, in a worker that is still alive.
      expect(fs.existsSync(file)).toBe(true)
      const pid = Number(fs.readFileSync(file, "utf8"))
      expect(pids).toContain(pid)
      expect(isAlive(pid)).toBe(true)
      expect((yield* stats).crashes).toBe(0)
      expect(yield* ProcessPool.submit(Square, 4)).toBe(16)
    }).pipe(Effect.provide(poolLayer())))

  it.live("a CPU-spinning task that ignores interruption is killed after the grace, and the next task runs", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(ProcessPool.submit(Spin, 60_000))
      yield* Effect.sleep(200)
      const [pid] = yield* workerPids
      yield* Fiber.interrupt(fiber)
      // Interruption returned: the runaway worker was killed, not waited for.
      expect(isAlive(pid)).toBe(false)
      // The replacement serves the next task; no task queues behind the runaway one.
      const next = yield* ProcessPool.submit(Pid, { ms: 0 })
      expect(next).not.toBe(pid)
    }).pipe(Effect.provide(poolLayer({ size: 1, interruptGrace: 300 }))))

  it.live("a timeout around a CPU-spinning task ends in TaskTimeout and stops the work", () =>
    Effect.gen(function*() {
      const [pid] = yield* workerPids
      const error = yield* Effect.flip(ProcessPool.submit(Spin, 60_000, { timeout: 200 }))
      assert.instanceOf(error, PoolError.TaskTimeout)
      expect(error.timeout).toBe(200)
      expect(error.task).toBe("Spin")
      yield* waitUntil("the runaway worker to die", () => !isAlive(pid))
      expect(yield* ProcessPool.submit(Square, 6)).toBe(36)
    }).pipe(Effect.provide(poolLayer({ size: 1, interruptGrace: 300 }))))

  it.live("a timeout counts from the start of the task, not from its time in the queue", () =>
    Effect.gen(function*() {
      // The first task holds the only worker for 600 ms; the second waits, then runs for 50 ms.
      const first = yield* Effect.forkChild(ProcessPool.submit(Sleep, { ms: 600 }))
      const second = yield* ProcessPool.submit(Sleep, { ms: 50 }, { timeout: 400 })
      expect(typeof second).toBe("number")
      yield* Fiber.join(first)
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))

  it.live("a cooperative task that times out is interrupted without killing its worker", () =>
    Effect.gen(function*() {
      const file = tempFile("timeout-finalizer")
      const [pid] = yield* workerPids
      const error = yield* Effect.flip(ProcessPool.submit(Sleep, { ms: 30_000, file }, { timeout: 100 }))
      assert.instanceOf(error, PoolError.TaskTimeout)
      expect(fs.readFileSync(file, "utf8")).toBe(String(pid))
      expect(isAlive(pid)).toBe(true)
      expect(yield* workerPids).toEqual([pid])
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))
})

describe("load", () => {
  it.live("20,000 concurrent submits with mixed failures: every outcome counted", () =>
    Effect.gen(function*() {
      const n = 20_000
      // Every 5th fails with Negative; 13, and every 997th, die in the worker.
      const inputs = Array.from({ length: n }, (_, i) => i % 5 === 0 ? -i - 1 : i % 997 === 0 ? 13 : i)
      const exits = yield* Effect.forEach(inputs, (x) => Effect.exit(ProcessPool.submit(Square, x)), {
        concurrency: "unbounded"
      })
      const counts = { ok: 0, negative: 0, defects: 0 }
      exits.forEach((exit, i) => {
        const x = inputs[i]
        if (x < 0) {
          assert(Exit.isFailure(exit))
          const error = Cause.squash(exit.cause)
          assert.instanceOf(error, Negative)
          expect(error.n).toBe(x)
          counts.negative++
        } else if (x === 13) {
          assert(Exit.isFailure(exit))
          expect(Cause.hasDies(exit.cause)).toBe(true)
          counts.defects++
        } else {
          expect(exit).toEqual(Exit.succeed(x * x))
          counts.ok++
        }
      })
      expect(counts.ok + counts.negative + counts.defects).toBe(n)
      expect(counts.negative).toBe(4_000)
      expect(counts.defects).toBe(inputs.filter((x) => x === 13).length)
      const s = yield* stats
      expect(s.queued).toBe(0)
      expect(s.inflight).toBe(0)
      expect(s.workers.reduce((sum, w) => sum + w.tasksDone, 0)).toBe(n)
    }).pipe(Effect.provide(poolLayer())))
})
