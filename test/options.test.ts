/**
 * Options that make no sense are refused at once, with an `InvalidOption`
 * that names the option, the value it got and what it takes: the pool's own
 * when its layer is built (before any worker starts), a call's when the call
 * is made (before anything is sent). The pool goes on after a refused call.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Sharding } from "effect/cluster/Sharding"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { Count } from "./fixtures/streams.ts"
import { Square } from "./fixtures/tasks.ts"
import { fixture, poolLayer } from "./helpers.ts"

/** This process's children now, from /proc. */
const children = () =>
  fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean)

/** Expects `effect` to fail at once with an `InvalidOption` naming `option` and quoting `value`. */
const refused = <A, E, R>(effect: Effect.Effect<A, E, R>, option: string, value: string) =>
  Effect.gen(function*() {
    const error = yield* Effect.flip(effect).pipe(
      Effect.timeoutOrElse({
        duration: "1 second",
        orElse: () => Effect.die(new Error(`${option} = ${value} was not refused within a second`))
      })
    )
    assert.instanceOf(error, PoolError.InvalidOption, `${option} = ${value}`)
    expect(error.option).toBe(option)
    expect(error.value).toBe(value)
    expect(error.message).toBe(`Invalid option ${option}: got ${value}; it takes ${error.expected}.`)
    expect(error.expected.length).toBeGreaterThan(0)
  })

const worker = fixture("worker.ts")

/** Every option of the pool with values that make no sense, and how each is quoted back. */
const badPoolOptions: ReadonlyArray<readonly [Partial<Record<keyof ProcessPool.Options, unknown>>, string, string]> = [
  [{ size: 0 }, "size", "0"],
  [{ size: -1 }, "size", "-1"],
  [{ size: 1.5 }, "size", "1.5"],
  [{ size: Number.NaN }, "size", "NaN"],
  [{ size: "2" }, "size", "\"2\""],
  [{ minSize: -1 }, "minSize", "-1"],
  [{ maxSize: 0 }, "maxSize", "0"],
  [{ minSize: 3, maxSize: 1 }, "minSize", "3"],
  [{ size: 2, minSize: 3 }, "minSize", "3"],
  [{ idleTimeout: -5 }, "idleTimeout", "-5"],
  [{ idleTimeout: "soon" }, "idleTimeout", "\"soon\""],
  [{ maxWorkerMemory: 0 }, "maxWorkerMemory", "0"],
  [{ heartbeatInterval: 0 }, "heartbeatInterval", "0"],
  [{ hangTimeout: "-1 seconds" }, "hangTimeout", "\"-1 seconds\""],
  [{ workerConcurrency: 0 }, "workerConcurrency", "0"],
  [{ execArgv: "--inspect" }, "execArgv", "\"--inspect\""],
  [{ execArgv: [1] }, "execArgv", "[1]"],
  [{ env: "A=1" }, "env", "\"A=1\""],
  [{ compileCache: true }, "compileCache", "true"],
  [{ bundle: "" }, "bundle", "\"\""],
  [{ prefetch: -1 }, "prefetch", "-1"],
  [{ prefetch: "many" }, "prefetch", "\"many\""],
  [{ maxQueue: -5 }, "maxQueue", "-5"],
  [{ maxQueue: 0 }, "maxQueue", "0"],
  [{ queuePolicy: "drop" }, "queuePolicy", "\"drop\""],
  [{ interruptGrace: -1 }, "interruptGrace", "-1"],
  [{ startTimeout: -1 }, "startTimeout", "-1"],
  [{ startTimeout: 0 }, "startTimeout", "0"],
  [{ maxStartFailures: 0 }, "maxStartFailures", "0"],
  [{ maxTasksPerWorker: 0 }, "maxTasksPerWorker", "0"],
  [{ shutdown: "never" }, "shutdown", "\"never\""],
  [{ shutdownTimeout: -1 }, "shutdownTimeout", "-1"],
  [{ maxFrameSize: 10 }, "maxFrameSize", "10"],
  [{ maxFrameSize: 2 ** 40 }, "maxFrameSize", String(2 ** 40)],
  [{ inheritStderr: "yes" }, "inheritStderr", "\"yes\""],
  [{ streamWindow: 0 }, "streamWindow", "0"],
  [{ processGroups: 1 }, "processGroups", "1"],
  [{ name: "" }, "name", "\"\""],
  [{ metrics: "off" }, "metrics", "\"off\""],
  [{ worker: "" }, "worker", "\"\""],
  [{ worker: 42 }, "worker", "42"]
]

describe("options that make no sense", () => {
  it.live("every option of the pool: refused when the layer is built, before any worker starts", () =>
    Effect.gen(function*() {
      const before = children()
      for (const [options, option, value] of badPoolOptions) {
        const layer = ProcessPool.layer({ worker, ...options } as ProcessPool.Options)
        yield* refused(Effect.scoped(Layer.build(layer)), option, value)
        yield* refused(Effect.scoped(ProcessPool.make({ worker, ...options } as ProcessPool.Options)), option, value)
      }
      expect(children()).toStrictEqual(before)
    }))

  it.live("a worker module that does not exist: refused in one line that names the file", () =>
    Effect.gen(function*() {
      const missing = new URL("./fixtures/no-such-worker.ts", import.meta.url)
      yield* refused(Effect.scoped(ProcessPool.make({ worker: missing })), "worker", missing.href)
      const error = yield* Effect.flip(Effect.scoped(ProcessPool.make({ worker: "no/such/worker.ts" })))
      assert.instanceOf(error, PoolError.InvalidOption)
      expect(error.message).toContain(`there is no file at ${process.cwd()}/no/such/worker.ts`)
      expect(error.message.split("\n")).toHaveLength(1)
    }))

  it.live("every option of a call: refused when the call is made, and the pool goes on", () =>
    Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      const inputs = [1, 2, 3]
      const badMapOptions: ReadonlyArray<readonly [Record<string, unknown>, string, string]> = [
        [{ chunkSize: -1 }, "chunkSize", "-1"],
        [{ chunkSize: 0 }, "chunkSize", "0"],
        [{ chunkSize: 2.5 }, "chunkSize", "2.5"],
        [{ chunkSize: "big" }, "chunkSize", "\"big\""],
        [{ concurrency: 0 }, "concurrency", "0"],
        [{ bufferSize: -1 }, "bufferSize", "-1"],
        [{ ordered: "yes" }, "ordered", "\"yes\""],
        [{ key: 7 }, "key", "7"]
      ]
      for (const [options, option, value] of badMapOptions) {
        yield* refused(pool.map(Square, inputs, options), option, value)
        yield* refused(pool.mapExits(Square, inputs, options), option, value)
        yield* refused(Stream.runCollect(pool.stream(Square, inputs, options)), option, value)
      }
      const badSubmitOptions: ReadonlyArray<readonly [Record<string, unknown>, string, string]> = [
        [{ timeout: -1 }, "timeout", "-1"],
        [{ timeout: 0 }, "timeout", "0"],
        [{ timeout: "a while" }, "timeout", "\"a while\""],
        [{ window: 0 }, "window", "0"],
        [{ window: 1.5 }, "window", "1.5"],
        [{ key: "" }, "key", "\"\""]
      ]
      for (const [options, option, value] of badSubmitOptions) {
        yield* refused(pool.submit(Square, 2, options), option, value)
        yield* refused(Stream.runCollect(pool.submit(Count, 2, options)), option, value)
      }
      // Nothing was sent, and the pool is as it was.
      expect((yield* pool.stats).workers.every((w) => w.tasksDone === 0)).toBe(true)
      expect(yield* pool.map(Square, inputs, { chunkSize: 2 })).toStrictEqual([1, 4, 9])
      expect(yield* pool.submit(Square, 4, { timeout: "5 seconds" })).toBe(16)
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))

  it.live("a runner's own options: refused when its layer is built, before it reaches the engine", () =>
    Effect.gen(function*() {
      // Never asked for: the options are checked first.
      const noEngine = Layer.succeed(Sharding, {} as Sharding["Service"])
      const runner = (options: Partial<ProcessPool.RunnerOptions>) =>
        Layer.build(ProcessPool.layerRunner({ tasks: [Square], worker, ...options }).pipe(Layer.provide(noEngine)))
      yield* refused(runner({ maxStall: -1 }), "maxStall", "-1")
      yield* refused(runner({ entity: "" }), "entity", `""`)
      yield* refused(runner({ persisted: "yes" as never }), "persisted", `"yes"`)
    }).pipe(Effect.scoped))

  it.live("the values at the edges are taken", () =>
    Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      expect(yield* pool.map(Square, [1, 2], { chunkSize: 1, concurrency: 1, bufferSize: 0 })).toStrictEqual([1, 4])
      expect(yield* pool.submit(Square, 3, { window: Infinity, timeout: Infinity })).toBe(9)
    }).pipe(Effect.provide(poolLayer({
      minSize: 0,
      maxSize: 1,
      prefetch: 0,
      maxQueue: Infinity,
      interruptGrace: 0,
      idleTimeout: 0,
      shutdownTimeout: "0 millis",
      streamWindow: Infinity,
      maxTasksPerWorker: 1
    }))))
})
