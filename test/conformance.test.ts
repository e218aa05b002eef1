/**
 * What a caller sees, stated once and run on every backend: local worker
 * processes, worker threads, `layerTest` (the handlers in this process), and
 * the cluster (real runner processes on a real PostgreSQL). The same worker
 * module serves all four. What only processes or threads do (crashes,
 * recycling, hangs, their output) has its own tests.
 *
 * A backend that cannot honour a behaviour is listed in `notHonoured` below,
 * with the reason; the README says the same. Today every backend honours all.
 */
import { assert, describe, expect, layer } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { clientLayer } from "../examples/cluster.ts"
import { postgres } from "../examples/postgres.ts"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { startRunners } from "./cluster.ts"
import { clusterTasks } from "./fixtures/cluster-tasks.ts"
import { BadItem, Count, CountBytes, DieAfter, FailAfter } from "./fixtures/streams.ts"
import { BadResult, Negative, Sleep, Square, Unserved } from "./fixtures/tasks.ts"
import { count, fixture, tempFile, waitUntil } from "./helpers.ts"

/** The module every backend serves: the main fixture's handlers and the streaming ones. */
const worker = fixture("cluster-worker.ts")

/** Where the confined backend's workers may write. */
const confinedDir = fs.mkdtempSync(path.join(os.tmpdir(), "epp-confined-"))

interface Backend {
  readonly name: string
  /** Where its tests' workers write files; a fresh temp dir of each file's own when absent. */
  readonly files?: string
  /** The `pool` attribute of its metrics. */
  readonly pool: string
  readonly layer: Layer.Layer<ProcessPool.ProcessPool, unknown>
  readonly timeout: number
}

const backends: ReadonlyArray<Backend> = [
  {
    name: "processes",
    pool: "conformance-processes",
    layer: ProcessPool.layer({ worker, size: 2, inheritStderr: false, name: "conformance-processes" }),
    timeout: 60_000
  },
  {
    // Under Node's permission model, allowed nothing beyond what the pool needs for itself, and to write in a
    // directory of its own, where the fixture's finalizers say that they ran.
    name: "processes with permissions",
    pool: "conformance-permissions",
    layer: ProcessPool.layer({
      worker,
      size: 2,
      inheritStderr: false,
      name: "conformance-permissions",
      permissions: { allowFsWrite: [confinedDir] }
    }),
    files: confinedDir,
    timeout: 60_000
  },
  {
    name: "threads",
    pool: "conformance-threads",
    layer: ProcessPool.layer({
      worker,
      isolation: "thread",
      size: 2,
      inheritStderr: false,
      name: "conformance-threads"
    }),
    timeout: 60_000
  },
  {
    name: "layerTest",
    pool: "conformance-memory",
    layer: ProcessPool.layerTest({ worker, size: 2, name: "conformance-memory" }),
    timeout: 60_000
  },
  {
    name: "cluster",
    pool: "conformance-cluster",
    layer: Layer.unwrap(Effect.gen(function*() {
      const pg = yield* postgres
      yield* startRunners(pg, 2)
      return clientLayer(pg, { tasks: [...clusterTasks, Unserved], name: "conformance-cluster" })
    })),
    timeout: 120_000
  }
]

/** A file for a worker of `backend` to write. */
const fileOf = (backend: Backend, name: string): string =>
  backend.files === undefined ? tempFile(name) : path.join(fs.mkdtempSync(path.join(backend.files, "t-")), name)

/** A stream's items, and how it ended. */
const itemsThenEnd = <A, E>(stream: Stream.Stream<A, E>) =>
  Effect.gen(function*() {
    const items: Array<A> = []
    const exit = yield* Effect.exit(Stream.runForEach(stream, (item) => Effect.sync(() => void items.push(item))))
    return { items, exit }
  })

/** Behaviour a backend cannot honour, and why: none today. */
const notHonoured: Record<string, ReadonlyArray<string>> = {}

const outcomes = (pool: string, task: string, outcome: string) =>
  Effect.map(Metric.snapshot, (snapshot) => count(snapshot, "process_pool_tasks_total", { pool, task, outcome }))

/** 20, 21, 22, …: without end, and past 13, which the fixture's Square dies on. */
function* naturals() {
  for (let i = 20;; i++) yield i
}

for (const backend of backends) {
  const skipped = notHonoured[backend.name] ?? []
  describe(`conformance: ${backend.name}`, () => {
    layer(backend.layer, { timeout: backend.timeout, excludeTestServices: true })((it) => {
      // Live services (the real clock): these tests run real processes and real time.
      const test = (name: string, body: () => Effect.Effect<void, unknown, ProcessPool.ProcessPool>) =>
        skipped.includes(name) ? it.effect.skip(name, () => Effect.void) : it.effect(name, body, backend.timeout)

      test("unary and streaming tasks", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          expect(yield* pool.submit(Square, 12)).toBe(144)
          expect(yield* Stream.runCollect(pool.submit(Count, 5))).toStrictEqual([0, 1, 2, 3, 4])
        }))

      test("a typed failure keeps its class, and a defect its name, message and remote stack", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const failure = yield* Effect.flip(pool.submit(Square, -3))
          assert.instanceOf(failure, Negative)
          expect(failure.n).toBe(-3)
          const exit = yield* Effect.exit(pool.submit(Square, 13))
          assert(exit._tag === "Failure" && Cause.hasDies(exit.cause))
          const defect = Cause.squash(exit.cause) as Error
          expect(defect.name).toBe("RangeError")
          expect(defect.message).toBe("thirteen is unlucky")
          expect(defect.stack).toContain("fixtures/worker.ts")
        }))

      test("a stream's items arrive before its typed failure, its defect, or an item that does not encode", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const failed = yield* itemsThenEnd(pool.submit(FailAfter, -4))
          expect(failed.items).toStrictEqual([1, 2, 3])
          const failure = failed.exit._tag === "Failure" ? Cause.squash(failed.exit.cause) : undefined
          assert.instanceOf(failure, Negative)
          expect(failure.n).toBe(-4)
          const died = yield* itemsThenEnd(pool.submit(DieAfter, 0))
          expect(died.items).toStrictEqual([1, 2])
          assert(died.exit._tag === "Failure" && Cause.hasDies(died.exit.cause))
          expect((Cause.squash(died.exit.cause) as Error).message).toBe("the stream broke")
          const bad = yield* itemsThenEnd(pool.submit(BadItem, 0))
          expect(bad.items).toStrictEqual([1, 2])
          const error = bad.exit._tag === "Failure" ? Cause.squash(bad.exit.cause) : undefined
          assert.instanceOf(error, PoolError.SerializationError)
          expect([error.direction, error.side]).toStrictEqual(["result", "worker"])
        }))

      test("an ordered stream gives every result before its first failure", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          // The bad payload fails at once, while the items before it still run.
          const inputs = [{ ms: 300 }, { ms: 300 }, { ms: 300 }, "bad" as never]
          const { exit, items } = yield* itemsThenEnd(pool.stream(Sleep, inputs, { chunkSize: 1, concurrency: 4 }))
          expect(items).toHaveLength(3)
          const error = exit._tag === "Failure" ? Cause.squash(exit.cause) : undefined
          assert.instanceOf(error, PoolError.SerializationError)
        }))

      test("a binary task's bytes cross as bytes", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const items = yield* Stream.runCollect(pool.submit(CountBytes, 3))
          expect(items.map((bytes) => [bytes instanceof Uint8Array, ...bytes])).toStrictEqual([
            [true, 0, 1, 2],
            [true, 1, 1, 2],
            [true, 2, 1, 2]
          ])
        }))

      test("mapExits gives each item its own outcome: a bad payload fails only its item", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const exits = yield* pool.mapExits(Square, [2, -3, "x" as unknown as number, 13, 5], { chunkSize: 5 })
          expect(exits.map((exit) => exit._tag)).toStrictEqual(["Success", "Failure", "Failure", "Failure", "Success"])
          const [two, negative, bad, unlucky, five] = exits.map((exit) =>
            exit._tag === "Success" ? exit.value : Cause.squash(exit.cause)
          )
          expect([two, five]).toStrictEqual([4, 25])
          assert.instanceOf(negative, Negative)
          assert.instanceOf(bad, PoolError.SerializationError)
          expect([bad.direction, bad.side]).toStrictEqual(["payload", "caller"])
          expect((unlucky as Error).message).toBe("thirteen is unlucky")
        }))

      test("a bad payload is refused before it is sent, a bad result when it comes back", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const payload = yield* Effect.flip(pool.submit(Square, "3" as unknown as number))
          assert.instanceOf(payload, PoolError.SerializationError)
          expect(payload.direction).toBe("payload")
          const result = yield* Effect.flip(pool.submit(BadResult, 1))
          assert.instanceOf(result, PoolError.SerializationError)
          expect(result.direction).toBe("result")
          // The pool goes on.
          expect(yield* pool.submit(Square, 3)).toBe(9)
        }))

      test("a tag the workers do not serve fails with TaskNotServed", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const error = yield* Effect.flip(pool.submit(Unserved, 1))
          assert.instanceOf(error, PoolError.TaskNotServed)
          expect(error.task).toBe("Unserved")
        }))

      test("stream reads an endless input lazily: Stream.take ends it", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const first = yield* pool.stream(Square, naturals()).pipe(Stream.take(5), Stream.runCollect)
          expect(first).toStrictEqual([400, 441, 484, 529, 576])
        }))

      test("results in input order, or as they complete", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const inputs = Array.from({ length: 300 }, (_, i) => i + 20)
          const squares = inputs.map((i) => i * i)
          expect(yield* pool.map(Square, inputs)).toStrictEqual(squares)
          expect(yield* Stream.runCollect(pool.stream(Square, inputs))).toStrictEqual(squares)
          const unordered = yield* Stream.runCollect(pool.stream(Square, inputs, { ordered: false }))
          expect([...unordered].sort((a, b) => a - b)).toStrictEqual(squares)
          const exits = yield* pool.mapExits(Square, [2, -2, 4])
          expect(exits.map((exit) => exit._tag)).toStrictEqual(["Success", "Failure", "Success"])
        }))

      test("a timeout fails with TaskTimeout and stops the work: the handler's finalizer runs", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const file = fileOf(backend, "timed-out")
          const error = yield* Effect.flip(pool.submit(Sleep, { ms: 60_000, file }, { timeout: "1 second" }))
          assert.instanceOf(error, PoolError.TaskTimeout)
          yield* waitUntil("the handler's finalizer", () => fs.existsSync(file))
        }))

      test("interrupting the caller reaches the handler: its finalizer runs", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const file = fileOf(backend, "interrupted")
          const fiber = yield* Effect.forkChild(pool.submit(Sleep, { ms: 60_000, file }))
          yield* waitUntil("the task to run", Effect.map(pool.stats, (s) => s.running > 0), 10_000)
          yield* Fiber.interrupt(fiber)
          yield* waitUntil("the handler's finalizer", () => fs.existsSync(file))
        }))

      test("stats and statsStream", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const stats = yield* pool.stats
          expect(stats.state).toBe("open")
          expect(stats.workers.length).toBeGreaterThanOrEqual(2)
          expect(stats.workers.every((w) => typeof w.pid === "number")).toBe(true)
          const snapshots = yield* pool.statsStream("50 millis").pipe(Stream.take(3), Stream.runCollect)
          expect(snapshots).toHaveLength(3)
          expect(snapshots.every((s) => s.state === "open")).toBe(true)
        }))

      test("the caller's task counter counts every outcome", () =>
        Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const before = {
            success: yield* outcomes(backend.pool, "Square", "success"),
            failure: yield* outcomes(backend.pool, "Square", "failure"),
            defect: yield* outcomes(backend.pool, "Square", "defect"),
            notServed: yield* outcomes(backend.pool, "Unserved", "not_served")
          }
          yield* pool.map(Square, [1, 2, 3, 4])
          yield* Effect.exit(pool.submit(Square, -1))
          yield* Effect.exit(pool.submit(Square, 13))
          yield* Effect.exit(pool.submit(Unserved, 1))
          expect(yield* outcomes(backend.pool, "Square", "success")).toBe(before.success + 4)
          expect(yield* outcomes(backend.pool, "Square", "failure")).toBe(before.failure + 1)
          expect(yield* outcomes(backend.pool, "Square", "defect")).toBe(before.defect + 1)
          expect(yield* outcomes(backend.pool, "Unserved", "not_served")).toBe(before.notServed + 1)
        }))
    })
  })
}
