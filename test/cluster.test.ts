import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as References from "effect/References"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as SqlClient from "effect/sql/SqlClient"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as os from "node:os"
import { clientLayer, database } from "../examples/cluster.ts"
import { freePort, postgresWith } from "../examples/postgres.ts"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import * as Task from "../src/Task.ts"
import { childrenOf, clusterPool, kill9, postgres, runner, startRunners } from "./cluster.ts"
import { Again, Once } from "./fixtures/cluster-tasks.ts"
import { Count, Endless } from "./fixtures/streams.ts"
import { Negative, Pid, Sleep, Square, Unserved } from "./fixtures/tasks.ts"
import { isAlive, tempFile, waitUntil } from "./helpers.ts"

describe("cluster", () => {
  it.live(
    "3 runners and a client: 2,000 tasks, every outcome correct, every runner served some",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        const runners = yield* startRunners(pg, 3)
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const inputs = Array.from({ length: 2_000 }, (_, i) => i - 10)
          const exits = yield* pool.mapExits(Square, inputs)
          expect(exits.length).toBe(2_000)
          exits.forEach((exit, i) => {
            const n = inputs[i]
            if (n < 0) {
              assert(Exit.isFailure(exit))
              const error = Cause.squash(exit.cause)
              assert.instanceOf(error, Negative)
              expect(error.n).toBe(n)
            } else if (n === 13) {
              assert(Exit.isFailure(exit))
              const defect = Cause.squash(exit.cause) as Error
              expect(defect.name).toBe("RangeError")
              expect(defect.stack).toContain("fixtures/worker.ts")
            } else {
              expect(exit).toStrictEqual(Exit.succeed(n * n))
            }
          })

          expect(yield* pool.submit(Square, 12)).toBe(144)
          // A defect of one task is that task's answer: the others its entity holds go on.
          const [died, ...others] = yield* Effect.all(
            [13, 14, 15].map((n) => Effect.exit(pool.submit(Square, n, { key: "one entity" }))),
            { concurrency: "unbounded" }
          )
          assert(Exit.isFailure(died))
          expect((Cause.squash(died.cause) as Error).stack).toContain("fixtures/worker.ts")
          expect(others).toStrictEqual([Exit.succeed(196), Exit.succeed(225)])
          const failure = yield* Effect.flip(pool.submit(Square, -3))
          assert.instanceOf(failure, Negative)
          const bad = yield* Effect.flip(pool.submit(Square, "3" as unknown as number))
          assert.instanceOf(bad, PoolError.SerializationError)
          expect(bad.direction).toBe("payload")
          // A tag the runners do not serve, though the client knows it; and one the client does not know.
          const unserved = yield* Effect.flip(pool.submit(Unserved, 1))
          assert.instanceOf(unserved, PoolError.TaskNotServed)
          const unknown = yield* Effect.flip(pool.map(Task.make("Nobody", { payload: Schema.Number }), [1, 2]))
          assert.instanceOf(unknown, PoolError.TaskNotServed)

          // A key keeps related tasks on one runner; without one, they spread.
          const keyed = yield* Effect.forEach(
            Array.from({ length: 30 }),
            () => pool.submit(Pid, { ms: 0 }, { key: "related" }),
            { concurrency: 10 }
          )
          const owners = new Set(keyed.map((pid) => runners.findIndex((r) => childrenOf(r.pid).includes(pid))))
          expect(owners.size).toBe(1)
          expect(owners.has(-1)).toBe(false)

          const stats = yield* pool.stats
          expect(stats.runners?.map((r) => r.pid).sort()).toStrictEqual(runners.map((r) => r.pid).sort())
          for (const each of stats.runners ?? []) {
            expect(each.stats.workers.reduce((n, w) => n + w.tasksDone, 0)).toBeGreaterThan(0)
          }
        }).pipe(Effect.provide(clusterPool(pg)))
      }).pipe(Effect.scoped),
    120_000
  )
})

describe("cluster: a runner dies", () => {
  it.live(
    "kill -9 under load: every task accounted for once, idempotent ones all succeed, the stall bounded",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        const runners = yield* startRunners(pg, 3)
        const [victim] = runners
        const onceFile = tempFile("once")
        const againFile = tempFile("again")
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const count = 200
          let killedAt = 0
          let firstLoss = 0
          const run = (task: typeof Once | typeof Again, file: string) =>
            Effect.forEach(
              Array.from({ length: count }, (_, id) => id),
              (id) =>
                Effect.exit(pool.submit(task, { id, ms: 300, file })).pipe(
                  Effect.tap((exit) =>
                    Effect.sync(() => {
                      if (killedAt > 0 && firstLoss === 0 && Exit.isFailure(exit)) firstLoss = Date.now()
                    })
                  )
                ),
              { concurrency: "unbounded" }
            )
          const outcomes = yield* Effect.forkChild(Effect.all([run(Once, onceFile), run(Again, againFile)], {
            concurrency: 2
          }))
          // Kill it once work is flowing and one of its own workers started a plain task in the last 100 ms
          // (300 ms long, so still running), and its workers with it as a machine failure would.
          const workers = childrenOf(victim.pid)
          yield* waitUntil(
            "the victim to be running a plain task",
            () =>
              starts(onceFile).length >= 20 &&
              startLines(onceFile).some((run) => workers.includes(run.pid) && run.at > Date.now() - 100),
            30_000
          )
          yield* kill9(victim)
          killedAt = Date.now()
          const [once, again] = yield* Fiber.join(outcomes).pipe(Effect.timeout("60 seconds"))
          yield* waitUntil("the dead runner's workers to exit", () => workers.every((w) => !isAlive(w)))

          // Every idempotent task succeeded, some of them after running again elsewhere.
          again.forEach((exit, id) => expect(exit).toStrictEqual(Exit.succeed({ id, pid: expect.any(Number) })))
          // Every other task either succeeded, having started once, or failed with WorkerCrashed naming the
          // dead runner, having started at most once: none ran twice.
          const started = starts(onceFile)
          const lost = once.filter((exit) => Exit.isFailure(exit))
          expect(lost.length).toBeGreaterThan(0)
          once.forEach((exit, id) => {
            const times = started.filter((s) => s === id).length
            if (Exit.isSuccess(exit)) {
              expect(exit.value.id).toBe(id)
              expect(times).toBe(1)
            } else {
              const error = Cause.squash(exit.cause)
              assert.instanceOf(error, PoolError.WorkerCrashed)
              // Lost with the dead runner; or, rarely, stopped by the runner that took over its shard while that
              // runner settled in (the engine interrupts the entity): then the caller cannot name the runner.
              if (error.runner === undefined) {
                expect(error.reason).toContain("its runner stopped it")
              } else {
                expect(error.runner).toBe(`127.0.0.1:${victim.port}`)
                expect(error.pid).toBe(victim.pid)
              }
              expect(times).toBeLessThanOrEqual(1)
            }
          })
          const stall = firstLoss - killedAt
          yield* Effect.log(`stall after kill -9: ${stall} ms until the first lost task was reported`)
          expect(stall).toBeLessThan(5_000)
        }).pipe(Effect.provide(clusterPool(pg)))
      }).pipe(Effect.scoped),
    120_000
  )
})

describe("cluster: a runner freezes", () => {
  it.live(
    "SIGSTOP, then SIGCONT under load: its callers are told before the thaw; none starts after its outcome or runs twice",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        const runners = yield* startRunners(pg, 2)
        const [victim] = runners
        const file = tempFile("frozen")
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const count = 300
          // When each caller had its outcome.
          const ended: Array<number> = []
          const outcomes = yield* Effect.forkChild(Effect.forEach(
            Array.from({ length: count }, (_, id) => id),
            (id) =>
              Effect.exit(pool.submit(Once, { id, ms: 100, file })).pipe(
                Effect.tap(() => Effect.sync(() => void (ended[id] = Date.now())))
              ),
            { concurrency: "unbounded" }
          ))
          // Frozen once its workers have started some tasks, with many more waiting in its queue.
          const workers = childrenOf(victim.pid)
          yield* waitUntil("the victim to run tasks", () => startsOn(file, workers) >= 4, 30_000)
          process.kill(victim.pid, "SIGSTOP")
          const frozenAt = Date.now()
          let thawedAt = Infinity
          yield* Effect.sleep("12 seconds").pipe(
            Effect.ensuring(Effect.sync(() => {
              thawedAt = Date.now()
              process.kill(victim.pid, "SIGCONT")
            }))
          )
          const exits = yield* Fiber.join(outcomes).pipe(Effect.timeout("60 seconds"))
          // What the thawed runner would start, it starts at once: give it time to show.
          yield* Effect.sleep("2 seconds")
          const runs = startLines(file)
          for (const [id, times] of countBy(runs.map((run) => run.id))) {
            expect({ id, times }).toStrictEqual({ id, times: 1 })
          }
          const late = runs.filter((run) => run.at > ended[run.id])
          expect(late).toStrictEqual([])
          // Some callers were told their task was lost; every other task succeeded.
          const lost = exits.flatMap((exit, id) => Exit.isFailure(exit) ? [{ exit, id }] : [])
          for (const { exit } of lost) assert.instanceOf(Cause.squash(exit.cause), PoolError.WorkerCrashed)
          // The frozen runner did not hold its callers until it thawed: its silence gave its work up (the
          // example's socket layer gives up a connection after 1.5 s without a frame), and the callers of what it
          // held were told while it was still frozen, within 8 s of the freeze.
          expect(lost.length).toBeGreaterThan(0)
          const told = lost.map(({ id }) => ended[id] - frozenAt)
          expect(told.filter((ms) => ms >= Math.min(8_000, thawedAt - frozenAt))).toStrictEqual([])
          yield* Effect.log(`the callers of a frozen runner were told after ${Math.max(...told)} ms at most`)
          yield* Effect.log(`a frozen runner: ${lost.length} of ${count} tasks lost, ${runs.length} started`)
        }).pipe(Effect.provide(clusterPool(pg)))
      }).pipe(Effect.scoped),
    120_000
  )
})

/** The lines `id pid ms` of a file the tasks append to as they start. */
const startLines = (file: string): Array<{ readonly id: number; readonly pid: number; readonly at: number }> =>
  fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map((line) => {
    const [id, pid, at] = line.split(" ").map(Number)
    return { id, pid, at }
  })

/** How many times each value occurs. */
const countBy = <A>(values: ReadonlyArray<A>): Map<A, number> => {
  const counts = new Map<A, number>()
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1)
  return counts
}

/** How many tasks started on one of `pids`, by the lines `id pid` of a file the tasks append to. */
const startsOn = (file: string, pids: ReadonlyArray<number>): number => {
  try {
    return fs.readFileSync(file, "utf8").split("\n").filter((line) => pids.includes(Number(line.split(" ")[1])))
      .length
  } catch {
    return 0
  }
}

/** The ids that started, one line each, in a file the tasks append to. */
const starts = (file: string): Array<number> => {
  try {
    return fs.readFileSync(file, "utf8").split("\n").filter(Boolean).map((line) => Number(line.split(" ")[0]))
  } catch {
    return []
  }
}

describe("cluster: calls", () => {
  it.live(
    "interrupting a cluster call, or its timeout, stops the work on the runner: its finalizer runs in the worker",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        const runners = yield* startRunners(pg, 2)
        const file = tempFile("interrupted")
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const call = yield* Effect.forkChild(pool.submit(Sleep, { ms: 60_000, file }))
          yield* waitUntil(
            "the task to run on a runner",
            Effect.map(pool.stats, (s) => s.workers.some((w) => w.running > 0)),
            30_000
          )
          yield* Fiber.interrupt(call)
          yield* waitUntil("the finalizer in the worker", () => fs.existsSync(file), 10_000)
          const pid = Number(fs.readFileSync(file, "utf8"))
          expect(runners.flatMap((r) => childrenOf(r.pid))).toContain(pid)
          yield* waitUntil("the worker to be idle", Effect.map(pool.stats, (s) => s.running === 0), 10_000)

          // A timeout stops the work the same way, and says so.
          const timedOut = tempFile("timed-out")
          const error = yield* Effect.flip(pool.submit(Sleep, { ms: 60_000, file: timedOut }, { timeout: "1 second" }))
          assert.instanceOf(error, PoolError.TaskTimeout)
          yield* waitUntil("the timed-out task's finalizer", () => fs.existsSync(timedOut), 10_000)
        }).pipe(Effect.provide(clusterPool(pg)))
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "a streaming task streams across the cluster, and a slow consumer holds the producer back",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        yield* runner(pg)
        const file = tempFile("endless")
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          expect(yield* Stream.runCollect(pool.submit(Count, 5))).toStrictEqual([0, 1, 2, 3, 4])
          const taken = yield* pool.submit(Endless, file, { window: 64 }).pipe(
            Stream.tap(() => Effect.sleep(20)),
            Stream.take(50),
            Stream.runCollect
          )
          expect(taken).toStrictEqual(Array.from({ length: 50 }, (_, i) => i))
          // The stream was stopped: its finalizer ran in the worker.
          yield* waitUntil("the stream's finalizer", () => fs.existsSync(`${file}.end`), 10_000)
          // The producer ran a bounded window ahead of what was consumed, not on and on: the call's window
          // (64, read ahead by the runner), the runner's local window (128) and the engine's buffers, far
          // below what it makes in a second unchecked.
          const produced = Number(fs.readFileSync(file, "utf8"))
          yield* Effect.log(`produced ${produced} for 50 consumed`)
          expect(produced).toBeLessThan(50 + 64 + 128 + 200)
        }).pipe(Effect.provide(clusterPool(pg)))
      }).pipe(Effect.scoped),
    120_000
  )

  it.live("a runner added while work is flowing takes a share of it", () =>
    Effect.gen(function*() {
      const pg = yield* postgres
      const first = yield* runner(pg)
      yield* Effect.gen(function*() {
        const pool = yield* ProcessPool.ProcessPool
        const servedBy: Array<number> = []
        let second: Array<number> = []
        const flow = yield* Effect.forkChild(
          Effect.forEach(Array.from({ length: 8 }), () =>
            pool.submit(Pid, { ms: 10 }).pipe(
              Effect.tap((pid) => Effect.sync(() => servedBy.push(pid))),
              Effect.repeat({ while: () => !servedBy.some((pid) => second.includes(pid)) })
            ), { concurrency: 8, discard: true })
        )
        yield* waitUntil("work to flow", () => servedBy.length > 50, 30_000)
        const added = yield* runner(pg)
        second = childrenOf(added.pid)
        expect(second.length).toBeGreaterThan(0)
        yield* Fiber.join(flow).pipe(Effect.timeout("60 seconds"))
        const firstWorkers = childrenOf(first.pid)
        expect(servedBy.filter((pid) => second.includes(pid)).length).toBeGreaterThan(0)
        expect(servedBy.every((pid) => second.includes(pid) || firstWorkers.includes(pid))).toBe(true)
      }).pipe(Effect.provide(clusterPool(pg)))
    }).pipe(Effect.scoped), 120_000)
})

describe("cluster: the same service", () => {
  it.live(
    "statsStream follows the runners and ends when the layer closes; bad options are refused at once",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        yield* startRunners(pg, 1)
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          expect(yield* pool.map(Square, [1, 2, 3])).toStrictEqual([1, 4, 9])
          const refusals = yield* Effect.all([
            Effect.flip(pool.map(Square, [1, 2], { chunkSize: 0 })),
            Effect.flip(pool.mapExits(Square, [1, 2], { concurrency: -1 })),
            Effect.flip(Stream.runCollect(pool.stream(Square, [1, 2], { chunkSize: "many" as never }))),
            Effect.flip(pool.submit(Square, 2, { timeout: -1 }))
          ])
          expect(refusals.map((e) => e._tag)).toStrictEqual(Array(4).fill("InvalidOption"))
          expect(refusals.map((e) => (e as PoolError.InvalidOption).option)).toStrictEqual([
            "chunkSize",
            "concurrency",
            "chunkSize",
            "timeout"
          ])
        }).pipe(Effect.provide(clusterPool(pg)))
        // Followed while the layer is open, and to its end once it closes.
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(clusterPool(pg), scope)
        const snapshots: Array<ProcessPool.Stats> = []
        const following = yield* ProcessPool.statsStream("100 millis").pipe(
          Stream.runForEach((snapshot) => Effect.sync(() => snapshots.push(snapshot))),
          Effect.provideContext(context),
          Effect.forkChild
        )
        yield* waitUntil("two snapshots of the open layer", () => snapshots.length >= 2, 10_000)
        yield* Scope.close(scope, Exit.void)
        yield* Fiber.join(following)
        expect(snapshots.length).toBeGreaterThanOrEqual(3)
        for (const snapshot of snapshots.slice(0, -1)) {
          expect(snapshot.state).toBe("open")
          expect(snapshot.runners).toHaveLength(1)
          expect(snapshot.workers).toHaveLength(2)
        }
        expect(snapshots.at(-1)!.state).toBe("closed")
        // The layer refuses its own bad options before it reaches the cluster.
        const badClient = yield* Effect.flip(Layer.build(clientLayer(pg, { tasks: [Square], spread: 0 })))
        assert.instanceOf(badClient, PoolError.InvalidOption)
        expect(badClient.message).toContain("Invalid option spread: got 0")
      }).pipe(Effect.scoped),
    120_000
  )
})

describe("cluster: no runner, slow streams", () => {
  it.live(
    "with no runner, a call's timeout bounds it, the log says what to start, and a waiting call ends once one comes",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        const warnings: Array<string> = []
        const logger = Logger.make(({ logLevel, message }) => {
          if (logLevel === "Warn") warnings.push(String(message))
        })
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const started = Date.now()
          const timedOut = yield* Effect.flip(pool.submit(Square, 3, { timeout: "1 second" }))
          const waited = Date.now() - started
          assert.instanceOf(timedOut, PoolError.TaskTimeout)
          expect(timedOut.where).toBe("cluster")
          expect(timedOut.message).toContain("may not have started")
          expect(waited).toBeGreaterThanOrEqual(900)
          expect(waited).toBeLessThan(4_000)
          // A call with no timeout waits for a runner; meanwhile the log says what to start.
          const waiting = yield* Effect.forkChild(pool.submit(Square, 4))
          yield* waitUntil("the warning that no runner answers", () => warnings.length > 0, 15_000)
          expect(warnings[0]).toContain("ProcessPool.layerRunner")
          yield* startRunners(pg, 1)
          expect(yield* Fiber.join(waiting)).toBe(16)
        }).pipe(
          Effect.provide(clusterPool(pg)),
          Effect.provideService(References.CurrentLoggers, new Set([logger]))
        )
      }),
    90_000
  )

  it.live(
    "timeout bounds a streaming task's whole stream through the cluster; TaskNotServed names the list to fix",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        yield* startRunners(pg, 1)
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          const file = tempFile("endless")
          const items: Array<number> = []
          const started = Date.now()
          const error = yield* pool.submit(Endless, file, { timeout: "1 second", window: 4 }).pipe(
            Stream.runForEach((n) => Effect.sync(() => void items.push(n)).pipe(Effect.andThen(Effect.sleep(20)))),
            Effect.flip
          )
          assert.instanceOf(error, PoolError.TaskTimeout)
          expect(Date.now() - started).toBeLessThan(5_000)
          expect(items.length).toBeGreaterThan(0)
          // The runner's stream was stopped: its finalizer ran in the worker.
          yield* waitUntil("the worker's stream to be finalized", () => fs.existsSync(`${file}.end`), 10_000)
          // Not listed by any runner, or not by this caller.
          const byRunners = yield* Effect.flip(pool.submit(Unserved, 1))
          assert.instanceOf(byRunners, PoolError.TaskNotServed)
          expect(byRunners.where).toBe("runners")
          expect(byRunners.message).toContain("layerRunner({ tasks })")
          const byCaller = yield* Effect.flip(pool.submit(NotListed, 1))
          assert.instanceOf(byCaller, PoolError.TaskNotServed)
          expect(byCaller.message).toContain("layerCluster({ tasks })")
        }).pipe(Effect.provide(clusterPool(pg)))
      }),
    60_000
  )
})

/** A task that no runner and no caller lists. */
const NotListed = Task.make("NotListed", { payload: Schema.Number, success: Schema.Number })

describe("cluster: its storage dies", () => {
  it.live(
    "PostgreSQL killed under load: every call ends in time, typed; new calls fail at once; restarted, work resumes",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        yield* startRunners(pg, 1)
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          expect(yield* pool.submit(Square, 3)).toBe(9)
          const calls = yield* Effect.forkChild(Effect.forEach(
            Array.from({ length: 200 }, (_, i) => i),
            () => Effect.exit(pool.submit(Sleep, { ms: 200 })),
            { concurrency: "unbounded" }
          ))
          // A map and a stream, which take other ways through the cluster.
          const mapped = yield* Effect.forkChild(
            pool.mapExits(Sleep, Array.from({ length: 100 }, () => ({ ms: 100 })), { chunkSize: 4 })
          )
          const streamed = yield* Effect.forkChild(
            Effect.exit(Stream.runDrain(pool.submit(Endless, tempFile("endless-storage"), { window: 16 })))
          )
          yield* Effect.sleep("500 millis")
          const postmaster = Number(fs.readFileSync(`${pg.dir}/data/postmaster.pid`, "utf8").split("\n")[0])
          process.kill(postmaster, "SIGKILL")
          const killedAt = Date.now()
          // New calls right after: each ends typed as well.
          const early = yield* Effect.forkChild(Effect.forEach(
            Array.from({ length: 10 }, (_, i) => i),
            (i) => Effect.exit(pool.submit(Square, i)).pipe(Effect.delay(i * 150)),
            { concurrency: "unbounded" }
          ))
          const exits: Array<Exit.Exit<unknown, unknown>> = [
            ...yield* Fiber.join(calls).pipe(Effect.timeout("30 seconds")),
            ...yield* Fiber.join(mapped).pipe(Effect.timeout("30 seconds")),
            yield* Fiber.join(streamed).pipe(Effect.timeout("30 seconds")),
            ...yield* Fiber.join(early).pipe(Effect.timeout("30 seconds"))
          ]
          const took = Date.now() - killedAt
          yield* Effect.log(`storage killed: every call ended ${took} ms after`)
          // storageTimeout (5 s), the probe's period and its own timeout, and slack for a loaded machine.
          expect(took).toBeLessThan(5_000 + 1_500 + 3_000)
          const tags = exits.map((exit) => {
            if (Exit.isSuccess(exit)) return "success"
            const error = Cause.squash(exit.cause)
            return PoolError.isPoolError(error) ? error._tag : `not typed: ${Cause.pretty(exit.cause)}`
          })
          expect(tags.filter((tag) => !["success", "StorageUnreachable", "WorkerCrashed"].includes(tag))).toStrictEqual(
            []
          )
          expect(tags).toContain("StorageUnreachable")
          // Once it has been out longer than storageTimeout, a new call fails at once.
          yield* Effect.sleep(Math.max(0, killedAt + 6_000 - Date.now()))
          const started = Date.now()
          const refused = yield* Effect.flip(pool.submit(Square, 2))
          assert.instanceOf(refused, PoolError.StorageUnreachable)
          expect(refused.unreachableFor).toBeGreaterThanOrEqual(5_000)
          expect(Date.now() - started).toBeLessThan(1_000)
          // Back again, work resumes: every plain task runs, once.
          yield* pg.restart
          const file = tempFile("resumed")
          yield* waitUntil("calls to go through again", Effect.isSuccess(pool.submit(Square, 4)), 30_000)
          const resumed = yield* Effect.forEach(
            Array.from({ length: 50 }, (_, id) => id),
            (id) => pool.submit(Once, { id, ms: 10, file }),
            { concurrency: "unbounded" }
          )
          expect(resumed.map((ran) => ran.id)).toStrictEqual(Array.from({ length: 50 }, (_, id) => id))
          expect(countBy(startLines(file).map((run) => run.id)).size).toBe(50)
          expect(startLines(file)).toHaveLength(50)
        }).pipe(Effect.provide(clusterPool(pg)))
      }),
    120_000
  )
})

describe("cluster: its PostgreSQL", () => {
  const leftovers = () => fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith("epp-pg-")).sort()

  it.live(
    "a server that cannot start fails with PostgreSQL's own message at once, and leaves no file or process behind",
    () =>
      Effect.gen(function*() {
        const before = leftovers()
        const error = yield* Effect.flip(Effect.scoped(postgresWith({ max_connections: "-1" })))
        expect(error._tag).toBe("PostgresError")
        expect(error.step).toBe("postgres")
        // PostgreSQL's words, not ours.
        expect(error.message).toMatch(/-1 is outside the valid range for parameter "max_connections"/)
        expect(leftovers()).toStrictEqual(before)
        expect(
          fs.readdirSync("/proc").some((pid) => {
            try {
              return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("max_connections=-1")
            } catch {
              return false
            }
          })
        ).toBe(false)
      }),
    // Not the cluster tests' 120 s: a start that fails must fail in seconds.
    15_000
  )

  it.live(
    "a connection refused and a wrong password each say so in the client's error",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        const closed = yield* freePort
        const refused = yield* Effect.flip(Layer.build(clusterPool({ ...pg, port: closed })))
        expect(refused.message).toContain(`127.0.0.1:${closed}`)
        expect(refused.message).toMatch(/ECONNREFUSED/)
        const denied = yield* Effect.flip(Layer.build(clusterPool({ ...pg, password: "not it" })))
        expect(denied.message).toMatch(/password authentication failed/)
      }).pipe(Effect.scoped),
    30_000
  )

  it.live(
    "a server that started is stopped and removed with its scope",
    () =>
      Effect.gen(function*() {
        const pg = yield* Effect.scoped(postgres)
        expect(fs.existsSync(pg.dir)).toBe(false)
      }),
    15_000
  )
})

describe("cluster: persisted mode", () => {
  it.live(
    "messages stored in PostgreSQL reach the runners, and typed failures still arrive as their class",
    () =>
      Effect.gen(function*() {
        const pg = yield* postgres
        yield* Effect.all([runner(pg, 1, "persisted"), runner(pg, 1, "persisted")], {
          concurrency: "unbounded"
        })
        yield* Effect.gen(function*() {
          const pool = yield* ProcessPool.ProcessPool
          expect(yield* pool.submit(Square, 9)).toBe(81)
          assert.instanceOf(yield* Effect.flip(pool.submit(Square, -1)), Negative)
          expect(yield* pool.map(Square, [1, 2, 3, 4])).toStrictEqual([1, 4, 9, 16])
        }).pipe(Effect.provide(clusterPool(pg, "persisted")))
        // They went through the engine's message table.
        const stored = yield* Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const rows = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM cluster_messages`
          return rows[0].n
        }).pipe(Effect.provide(Layer.unwrap(database(pg))), Effect.orDie)
        expect(stored).toBeGreaterThanOrEqual(3)
      }).pipe(Effect.scoped),
    120_000
  )
})
