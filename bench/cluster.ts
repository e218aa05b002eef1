/**
 * The cluster path's figures, next to the local pool and to a bare
 * effect/cluster RPC round trip, on this machine:
 *
 *   npm run bench:cluster
 *
 * It starts an embedded PostgreSQL and two runners (`examples/cluster.ts`'s
 * set-up), each with a local pool of one worker, and compares with a local
 * pool of two workers in this process:
 *
 * - submit: one task per request, 256 in flight: tasks/s
 * - map: 100,000 tiny items, chunked: items/s
 * - stream: the same items through `pool.stream`, results as a Stream: items/s
 * - a streaming task: 100,000 items of one task's stream: items/s
 * - latency: sequential calls, p50 and p99: the per-task overhead
 * - bare: an entity whose handler answers at once (no pool), same loads
 * - stall: a runner frozen for 8 s (SIGSTOP, then SIGCONT), then kill -9 of
 *   the other, under load: the time until their tasks are reported lost
 *   (`WorkerCrashed`), and the longest time without any outcome, during the
 *   freeze and in the 4 s after the thaw
 *
 * CPU-heavy (about a minute on 2 cores), and it asserts nothing.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
// bench/ is a package of its own: the library by path, src/ as the example gets it through the source condition.
import * as Entity from "effect/cluster/Entity"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Rpc from "effect/rpc/Rpc"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import {
  database,
  recommended,
  runnerLayer,
  runnersDatabase,
  Squares,
  startRunner,
  Where
} from "../examples/cluster.ts"
import { freePort, postgres } from "../examples/postgres.ts"
import { ProcessPool } from "../src/index.ts"

const Bare = Entity.make("bench-bare", [Rpc.make("Echo", { payload: Schema.Number, success: Schema.Number })])

const worker = new URL("../examples/cluster.ts", import.meta.url).href

const runner = Effect.fnUntraced(function*(pgPort: number, port: number) {
  const bare = Bare.toLayer({ Echo: (request) => Effect.succeed(request.payload) })
  yield* Layer.build(
    bare.pipe(
      Layer.provideMerge(runnerLayer(runnersDatabase(pgPort), port, { tasks: [Where, Squares], worker, size: 1 }))
    )
  )
  process.stdout.write("ready\n")
  return yield* Effect.never
})

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]

/** Runs `n` calls `concurrency` at a time: calls/s. */
const throughput = (n: number, concurrency: number, call: (i: number) => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    const started = performance.now()
    yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), call, { concurrency, discard: true })
    return n / ((performance.now() - started) / 1000)
  })

/** `n` sequential calls after `n` unmeasured ones: p50 and p99 in microseconds. */
const latency = (n: number, call: (i: number) => Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    for (let i = 0; i < n; i++) yield* call(i)
    const times: Array<number> = []
    for (let i = 0; i < n; i++) {
      const started = performance.now()
      yield* call(i)
      times.push((performance.now() - started) * 1000)
    }
    times.sort((a, b) => a - b)
    return { p50: percentile(times, 0.5), p99: percentile(times, 0.99) }
  })

const measure = Effect.fnUntraced(function*(pool: ProcessPool.ProcessPool["Service"]) {
  const submit = (i: number) => pool.submit(Where, i)
  // The first calls start entities and compile codecs: leave them out.
  yield* throughput(2_000, 256, submit)
  yield* pool.map(Where, Array.from({ length: 20_000 }, (_, i) => i))
  return {
    submit: yield* throughput(5_000, 256, submit),
    map: yield* Effect.gen(function*() {
      const started = performance.now()
      yield* pool.map(Where, Array.from({ length: 100_000 }, (_, i) => i))
      return 100_000 / ((performance.now() - started) / 1000)
    }),
    latency: yield* latency(300, submit),
    stream: yield* Effect.gen(function*() {
      const started = performance.now()
      yield* Stream.runDrain(pool.stream(Where, Array.from({ length: 100_000 }, (_, i) => i)))
      return 100_000 / ((performance.now() - started) / 1000)
    }),
    streamingTask: yield* Effect.gen(function*() {
      const started = performance.now()
      yield* Stream.runDrain(pool.submit(Squares, 100_000))
      return 100_000 / ((performance.now() - started) / 1000)
    })
  }
})

const main = Effect.gen(function*() {
  const pg = yield* postgres
  const ports = [yield* freePort, yield* freePort]
  const script = new URL(import.meta.url).pathname
  const runners = yield* Effect.forEach(
    ports,
    (port) => startRunner([script, "runner", String(pg.port), String(port)], pg),
    { concurrency: "unbounded" }
  )

  const local = yield* Effect.scoped(Effect.flatMap(ProcessPool.make({ worker, size: 2 }), measure))

  const socket = yield* Effect.promise(() => import("../examples/socket.ts"))
  const sharding = socket.layer({ clientOnly: true, shardingConfig: recommended }).pipe(
    Layer.provide(yield* database(pg))
  )
  const result = yield* Effect.gen(function*() {
    const pool = yield* ProcessPool.ProcessPool
    const cluster = yield* measure(pool)
    const client = yield* Bare.client
    const echo = (i: number) => client(String(i % 64)).Echo(i)
    yield* throughput(2_000, 256, echo)
    const bare = { submit: yield* throughput(5_000, 256, echo), latency: yield* latency(300, echo) }

    /**
     * A fault of a runner under load: 64 calls in flight, without end, until `span` ms after the fault. `fault`
     * starts it and gives what ends it (a thaw, 8 s after it), if anything.
     */
    const underFault = (fault: () => (() => void) | undefined, span: number) =>
      Effect.gen(function*() {
        let faultAt = 0
        let firstLost = 0
        let lost = 0
        let done = 0
        const flow = Effect.forEach(Array.from({ length: 64 }), () =>
          Effect.exit(pool.submit(Where, 1)).pipe(
            Effect.tap((exit) =>
              Effect.sync(() => {
                done++
                if (faultAt === 0) return
                if (Exit.isFailure(exit)) {
                  lost++
                  if (firstLost === 0) firstLost = performance.now()
                }
              })
            ),
            Effect.repeat({ while: () => faultAt === 0 || performance.now() - faultAt < span })
          ), { concurrency: 64, discard: true })
        const fiber = yield* Effect.forkChild(flow)
        yield* Effect.sleep("1 second")
        const end = fault()
        faultAt = performance.now()
        const doneAtFault = done
        // The longest times without any outcome in the 8 s after the fault, and after it ended: how long work
        // stalled.
        let stall = 0
        let stallAfter = 0
        let ended = false
        yield* Effect.gen(function*() {
          let last = performance.now()
          let seen = done
          while (performance.now() - faultAt < span) {
            yield* Effect.sleep(10)
            if (!ended && performance.now() - faultAt >= 8_000) {
              ended = true
              end?.()
            }
            if (done !== seen) {
              const gap = performance.now() - last
              if (ended && last - faultAt >= 8_000) stallAfter = Math.max(stallAfter, gap)
              else stall = Math.max(stall, gap)
              last = performance.now()
              seen = done
            }
          }
        }).pipe(Effect.ensuring(Effect.sync(() => ended || end?.())))
        yield* Fiber.join(fiber).pipe(Effect.ignore)
        return {
          firstLostMs: firstLost - faultAt,
          longestGapMs: stall,
          longestGapAfterMs: stallAfter,
          lost,
          completedAfter: done - doneAtFault
        }
      })
    // Frozen for 8 s (SIGSTOP, then SIGCONT), and followed for 4 s after, then killed.
    const freeze = yield* underFault(() => {
      process.kill(runners[1].pid, "SIGSTOP")
      return () => process.kill(runners[1].pid, "SIGCONT")
    }, 12_000)
    const kill = yield* underFault(() => {
      process.kill(runners[0].pid, "SIGKILL")
      return undefined
    }, 8_000)
    return { cluster, bare, freeze, kill }
  }).pipe(Effect.provide(ProcessPool.layerCluster({ tasks: [Where, Squares] }).pipe(Layer.provideMerge(sharding))))

  const row = (name: string, submit: number, map: number | undefined, lat: { p50: number; p99: number }) =>
    console.log(
      `${name.padEnd(26)} ${submit.toFixed(0).padStart(8)} ${
        map === undefined ? "       -" : map.toFixed(0).padStart(8)
      } ${lat.p50.toFixed(0).padStart(8)} ${lat.p99.toFixed(0).padStart(8)}`
    )
  console.log(
    `${"".padEnd(26)} ${"tasks/s".padStart(8)} ${"items/s".padStart(8)} ${"p50 µs".padStart(8)} ${"p99 µs".padStart(8)}`
  )
  row("local pool, 2 workers", local.submit, local.map, local.latency)
  row("cluster, 2 runners x 1", result.cluster.submit, result.cluster.map, result.cluster.latency)
  row("bare cluster RPC (no pool)", result.bare.submit, undefined, result.bare.latency)
  console.log(
    `streams, items/s: pool.stream ${local.stream.toFixed(0)} local, ${result.cluster.stream.toFixed(0)} cluster ` +
      `(${(result.cluster.map / result.cluster.stream).toFixed(2)}x slower than its map); a streaming task ` +
      `${local.streamingTask.toFixed(0)} local, ${result.cluster.streamingTask.toFixed(0)} cluster ` +
      `(1/${(local.streamingTask / result.cluster.streamingTask).toFixed(1)} of local)`
  )
  console.log(
    `per-task overhead of the cluster path: ${(result.cluster.latency.p50 - local.latency.p50).toFixed(0)} µs over ` +
      `the local pool, ${(result.cluster.latency.p50 - result.bare.latency.p50).toFixed(0)} µs over a bare RPC (p50)`
  )
  const fault = (name: string, k: typeof result.kill) =>
    console.log(
      `${name} of a runner under load: ${
        k.lost === 0 ? "no task was lost" : `first task reported lost after ${k.firstLostMs.toFixed(0)} ms`
      }, longest time without any outcome ${k.longestGapMs.toFixed(0)} ms in the 8 s after it${
        k === result.freeze ? ` and ${k.longestGapAfterMs.toFixed(0)} ms in the 4 s after the thaw` : ""
      }, ${k.lost} lost (WorkerCrashed), ${k.completedAfter} outcomes in all`
    )
  fault("an 8 s freeze (SIGSTOP, SIGCONT)", result.freeze)
  fault("kill -9", result.kill)
})

if (import.meta.main) {
  const [role, pgPort, port] = process.argv.slice(2)
  if (role === "runner") {
    process.stdin.on("end", () => process.exit(0)).resume()
    NodeRuntime.runMain(Effect.scoped(runner(Number(pgPort), Number(port))))
  } else {
    main.pipe(Effect.scoped, NodeRuntime.runMain)
  }
}
