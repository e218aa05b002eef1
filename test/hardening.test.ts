import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as fs from "node:fs"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import {
  Big,
  BinaryEcho,
  BlockLater,
  CrashAlways,
  CrashOnce,
  Exit as ExitTask,
  FailCounted,
  Greeting,
  Leak,
  Negative,
  Pid,
  Point,
  Rich,
  Sleep,
  Spin,
  Square
} from "./fixtures/tasks.ts"
import { fixture, isAlive, poolLayer, stats, tempFile, waitUntil, workerPids } from "./helpers.ts"

const readyCount = Effect.map(stats, (s) => s.workers.filter((w) => w.state === "ready").length)

describe("hung workers", () => {
  it.live("a worker whose event loop blocks while idle is killed; the task sent to it runs in the replacement", () =>
    Effect.gen(function*() {
      const pid = yield* ProcessPool.submit(BlockLater, 60_000)
      yield* Effect.sleep(50)
      // Sent to the blocked worker, which can never start it: it goes back to the queue.
      expect(yield* ProcessPool.submit(Square, 3)).toBe(9)
      expect(isAlive(pid)).toBe(false)
      expect(yield* workerPids).not.toContain(pid)
      expect((yield* stats).crashes).toBe(1)
    }).pipe(Effect.provide(poolLayer({ size: 1, heartbeatInterval: 50, hangTimeout: 400 }))))

  it.live("a task that keeps the CPU busy longer than hangTimeout is not mistaken for a hang", () =>
    Effect.gen(function*() {
      const [pid] = yield* workerPids
      const spun = yield* ProcessPool.submit(Sleep, { ms: 0 }).pipe(
        Effect.andThen(ProcessPool.submit(BlockLater, 0)),
        Effect.andThen(ProcessPool.submit(Pid, { ms: 0 }))
      )
      expect(spun).toBe(pid)
      // A CPU-bound task of 3x hangTimeout: heartbeats go unanswered while it runs, by design.
      const { Spin } = yield* Effect.promise(() => import("./fixtures/tasks.ts"))
      expect(yield* ProcessPool.submit(Spin, 900)).toBe(pid)
      expect((yield* stats).crashes).toBe(0)
    }).pipe(Effect.provide(poolLayer({ size: 1, heartbeatInterval: 50, hangTimeout: 300 }))))
})

describe("recycling", () => {
  it.live("a worker past maxWorkerMemory is recycled after its task, and no task fails", () =>
    Effect.gen(function*() {
      const [first] = yield* workerPids
      expect(yield* ProcessPool.submit(Leak, 300)).toBe(first)
      yield* waitUntil("the leaking worker to be replaced", () => !isAlive(first))
      const next = yield* ProcessPool.submit(Pid, { ms: 0 })
      expect(next).not.toBe(first)
      expect((yield* stats).crashes).toBe(0)
    }).pipe(Effect.provide(poolLayer({ size: 1, maxWorkerMemory: 250 * 1024 * 1024 }))))
})

describe("elastic size", () => {
  it.live("the pool grows to maxSize under load and shrinks back to minSize when idle", () =>
    Effect.gen(function*() {
      expect(yield* readyCount).toBe(1)
      const pids = yield* Effect.forEach(Array.from({ length: 12 }, () => 0), () =>
        ProcessPool.submit(Pid, { ms: 400 }), {
        concurrency: "unbounded"
      })
      const distinct = new Set(pids).size
      expect(distinct).toBeGreaterThan(1)
      expect(distinct).toBeLessThanOrEqual(3)
      yield* waitUntil(
        "the pool to shrink to minSize",
        Effect.map(readyCount, (n) =>
          n === 1),
        10_000
      )
      expect((yield* stats).crashes).toBe(0)
    }).pipe(Effect.provide(poolLayer({ minSize: 1, maxSize: 3, idleTimeout: 300, heartbeatInterval: 50 }))))
})

describe("start-up failures", () => {
  it.live("a replacement that keeps failing to start backs off, then the pool reports itself broken", () =>
    Effect.gen(function*() {
      const counter = tempFile("starts")
      process.env.FLAKY_COUNTER = counter
      const layer = poolLayer({ worker: fixture("flaky-start.ts"), size: 1, maxStartFailures: 3 })
      yield* Effect.gen(function*() {
        const crash = yield* Effect.flip(ProcessPool.submit(ExitTask, 1))
        assert.instanceOf(crash, PoolError.WorkerCrashed)
        // Queued while the replacement keeps failing: it ends with the start error, not a hang.
        const waiting = yield* Effect.flip(ProcessPool.submit(Square, 2))
        assert.instanceOf(waiting, PoolError.WorkerStartError)
        expect(waiting.message).toContain("failed to start 3 times in a row")
        expect(waiting.message).toContain("the license server is down")
        // Later work fails at once with the same error; nothing respawns in a loop.
        const later = yield* Effect.flip(ProcessPool.submit(Square, 2))
        assert.instanceOf(later, PoolError.WorkerStartError)
        yield* Effect.sleep(300)
        expect(Number(fs.readFileSync(counter, "utf8"))).toBe(4)
      }).pipe(Effect.provide(layer), Effect.ensuring(Effect.sync(() => delete process.env.FLAKY_COUNTER)))
    }))
})

describe("retries", () => {
  it.live("an idempotent task whose worker crashed is retried, and succeeds", () =>
    Effect.gen(function*() {
      const marker = tempFile("crashed-once")
      const pid = yield* ProcessPool.submit(CrashOnce, marker)
      expect(fs.existsSync(marker)).toBe(true)
      expect(pid).toBeGreaterThan(0)
      expect((yield* stats).crashes).toBe(1)
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))

  it.live("an idempotent item of a map whose worker crashed is retried too, in a chunk of one as in a larger one", () =>
    Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      const alone = tempFile("crashed-once")
      expect(yield* pool.map(CrashOnce, [alone], { chunkSize: 1 })).toHaveLength(1)
      const inChunk = [tempFile("crashed-once"), tempFile("crashed-once"), tempFile("crashed-once")]
      const pids = yield* pool.map(CrashOnce, inChunk, { chunkSize: 3 })
      expect(pids.every((pid) => pid > 0)).toBe(true)
      // Every item crashed its worker once, and none failed.
      expect((yield* stats).crashes).toBe(4)
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))

  it.live("an item of a crashed chunk runs no more often than its schedule allows", () =>
    Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      const error = yield* Effect.flip(pool.map(CrashAlways, [undefined, undefined], { chunkSize: 2 }))
      assert.instanceOf(error, PoolError.WorkerCrashed)
      expect(error.reason).toContain("every one of 3 attempts crashed a worker")
      // Each item: its first run and 2 retries (Schedule.recurs(2)), as a call of it would.
      expect((yield* stats).crashes).toBe(6)
    }).pipe(Effect.provide(poolLayer({ size: 1, prefetch: 0 }))))

  it.live("a payload that crashes every worker is reported with its tag once the retries are spent", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ProcessPool.submit(CrashAlways, undefined))
      assert.instanceOf(error, PoolError.WorkerCrashed)
      expect(error.task).toBe("CrashAlways")
      expect(error.exitCode).toBe(9)
      expect(error.reason).toContain("every one of 3 attempts crashed a worker")
      expect((yield* stats).crashes).toBe(3)
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))

  it.live("a typed failure is never retried", () =>
    Effect.gen(function*() {
      const file = tempFile("runs")
      const error = yield* Effect.flip(ProcessPool.submit(FailCounted, file))
      assert.instanceOf(error, Negative)
      expect(fs.readFileSync(file, "utf8")).toBe("x")
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))

  it.live("retry needs idempotent: true", () =>
    Effect.gen(function*() {
      const { Task } = yield* Effect.promise(() => import("../src/index.ts"))
      const { Schedule, Schema } = yield* Effect.promise(() => import("effect"))
      expect(() => Task.make("Unsafe", { payload: Schema.Number, retry: Schedule.recurs(1) })).toThrow(/idempotent/)
    }))
})

describe("maximum frame size", () => {
  it.live("a payload over maxFrameSize fails at the caller; a result over it fails as a result error", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        ProcessPool.submit(Rich, {
          at: new Date(0),
          big: 1n,
          bytes: new Uint8Array(64 * 1024),
          point: new Point({ x: 0, y: 0 })
        })
      )
      assert.instanceOf(error, PoolError.SerializationError)
      expect(error.direction).toBe("payload")
      expect(error.issue).toContain("maxFrameSize")
      const result = yield* Effect.flip(ProcessPool.submit(Big, 100_000))
      assert.instanceOf(result, PoolError.SerializationError)
      expect(result.direction).toBe("result")
      expect(result.issue).toContain("maxFrameSize")
      // The worker was not harmed.
      expect((yield* ProcessPool.submit(Big, 1_000)).length).toBe(1_000)
      expect((yield* stats).crashes).toBe(0)
    }).pipe(Effect.provide(poolLayer({ size: 1, maxFrameSize: 32 * 1024 }))))
})

describe("shared file", () => {
  const hasTmpfs = process.platform === "linux" && fs.existsSync("/dev/shm")

  it.live("large payloads cross through an unnamed shared file, binary and JSON, and a crash loses only its task", () =>
    Effect.gen(function*() {
      const pids = yield* workerPids
      if (hasTmpfs) {
        // Each worker's fd 4 is the shared file, already unlinked: nothing can be left behind.
        for (const pid of pids) {
          expect(fs.readlinkSync(`/proc/${pid}/fd/4`)).toMatch(/^\/dev\/shm\/effect-process-pool-\d+-\d+ \(deleted\)$/)
        }
      }
      const point = new Point({ x: 3, y: 4 })
      const inputs = Array.from({ length: 40 }, (_, i) => ({
        bytes: new Uint8Array(512 * 1024).fill(i + 1),
        at: new Date(i),
        big: BigInt(i),
        point
      }))
      const name = "n".repeat(200 * 1024)
      const fiber = yield* Effect.forkChild(Effect.all([
        Effect.forEach(inputs, (input) => Effect.exit(ProcessPool.submit(BinaryEcho, input)), { concurrency: 8 }),
        Effect.forEach(inputs, () => Effect.exit(ProcessPool.submit(Greeting, name)), { concurrency: 8 })
      ]))
      yield* waitUntil("shared bytes sent", Effect.map(stats, (s) => s.workers.some((w) => w.sharedBytes > 0)))
      const victim = (yield* stats).workers.find((w) => w.inflight > 0 && w.sharedBytes > 0)
      assert.isDefined(victim)
      process.kill(victim.pid, "SIGKILL")
      const [echoes, greetings] = yield* Fiber.join(fiber)
      let crashed = 0
      echoes.forEach((exit, i) => {
        if (Exit.isSuccess(exit)) {
          expect(exit.value.bytes.length).toBe(512 * 1024)
          expect(exit.value.sum).toBe((i + 1) * 512 * 1024 % 2 ** 53)
          expect(exit.value.big).toBe(BigInt(i))
        } else {
          crashed++
          const error = Cause.findErrorOption(exit.cause)
          assert.isTrue(error._tag === "Some" && error.value instanceof PoolError.WorkerCrashed)
        }
      })
      greetings.forEach((exit) => {
        if (Exit.isSuccess(exit)) expect(exit.value).toContain(name)
        else crashed++
      })
      // Only the task running in the killed worker fails; the ones sent ahead to it run elsewhere.
      expect(crashed).toBeLessThanOrEqual(1)
      const after = yield* stats
      expect(after.crashes).toBe(1)
      if (hasTmpfs) expect(after.workers.reduce((sum, w) => sum + w.sharedBytes, 0)).toBeGreaterThan(0)
      // The pool goes on, over the replacement's shared file too.
      const again = yield* ProcessPool.submit(BinaryEcho, inputs[5])
      expect(again.sum).toBe(6 * 512 * 1024)
      if (hasTmpfs) {
        expect(fs.readdirSync("/dev/shm").filter((f) => f.startsWith(`effect-process-pool-${process.pid}-`))).toEqual(
          []
        )
      }
    }).pipe(Effect.provide(poolLayer())))

  // Without tmpfs, results take the pipe, and this is what they do.
  it.live.skipIf(!hasTmpfs)(
    "a large result reaches the parent at once, not after the CPU-bound task behind it",
    () =>
      Effect.gen(function*() {
        // Sent together: the worker answers Big, then spins for 5 s without yielding.
        const spin = yield* Effect.forkChild(Effect.exit(ProcessPool.submit(Spin, 5_000)))
        const big = yield* ProcessPool.submit(Big, 2_000_000)
        expect(big.length).toBe(2_000_000)
        // Through a pipe, the rest of those 2 MB would wait in the worker until the spin ended,
        // and arrive with its result. Here the spin is still running: killing the worker fails it.
        const [pid] = yield* workerPids
        process.kill(pid, "SIGKILL")
        const exit = yield* Fiber.join(spin)
        assert.isTrue(Exit.isFailure(exit))
        const error = Cause.findErrorOption((exit as Exit.Failure<unknown, unknown>).cause)
        assert.isTrue(error._tag === "Some" && error.value instanceof PoolError.WorkerCrashed)
      }).pipe(Effect.provide(poolLayer({ size: 1, prefetch: 1 })))
  )
})
