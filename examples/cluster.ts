// examples/cluster.ts
//
// Beyond one machine, on one: an embedded PostgreSQL, two effect/cluster
// runners (each a process with a local pool of 2 workers), and a client that
// maps 10,000 tasks over them. It prints how many each runner and each worker
// served.
//
//   npm run example examples/cluster.ts
//
// Ctrl-C at any time stops all of it: the runners, their workers and the
// database. Nothing is left behind.
//
// One file plays three parts: the client (no argument), a runner
// (`runner <postgres port> <runner port>`), and the worker module that the
// runners' pools load. The cluster's modules are imported where they are
// used, so a worker loads only the task and its handler.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ProcessPool, Task, Worker } from "effect-process-pool"
import * as Cause from "effect/Cause"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { spawn } from "node:child_process"
import { type Connection, freePort, postgres } from "./postgres.ts"

// The contract: a square, and where it was computed.
export const Where = Task.make("Where", {
  payload: Schema.Number,
  success: Schema.Struct({ square: Schema.Number, worker: Schema.Number, runner: Schema.Number })
})

// A streaming contract: the squares of 0, 1, …, n - 1.
export const Squares = Task.make("Squares", { payload: Schema.Number, success: Schema.Number, stream: true })

// A worker's parent is the runner whose pool it belongs to.
export default Worker.handlers(
  Where.handler((n) => Effect.succeed({ square: n * n, worker: process.pid, runner: process.ppid })),
  Squares.handler((n) => Stream.map(Stream.range(0, n - 1), (i) => i * i))
)

// The settings that bound the stall after a runner dies to about 5 s (see the README).
export const recommended = {
  runnerHealthCheckInterval: "250 millis",
  refreshAssignmentsInterval: "250 millis",
  shardLockRefreshInterval: "1 second",
  shardLockExpiration: "4 seconds"
} as const

/** The client could not connect to PostgreSQL: `reason` is what the server or the network said. */
export class ConnectError extends Data.TaggedError("ConnectError")<{
  readonly port: number
  readonly reason: string
}> {
  override get message() {
    return `Cannot connect to PostgreSQL on 127.0.0.1:${this.port}: ${this.reason}`
  }
}

/** An error's message and its causes' (the client's own says only "Failed to connect"), in one line. */
const reasonOf = (error: unknown): string => {
  const messages: Array<string> = []
  for (let current = error, depth = 0; current instanceof Object && depth < 8; depth++) {
    const message = (current as { readonly message?: unknown }).message
    if (typeof message === "string" && message !== "" && !messages.includes(message)) messages.push(message)
    current = (current as { readonly cause?: unknown }).cause
  }
  return messages.length === 0 ? String(error) : messages.join(": ")
}

/** The cluster's storage: the PostgreSQL client. */
export const database = Effect.fnUntraced(function*(pg: Connection) {
  const { PgClient } = yield* Effect.promise(() => import("@effect/sql-pg"))
  const Redacted = yield* Effect.promise(() => import("effect/Redacted"))
  return PgClient.layer({
    host: "127.0.0.1",
    port: pg.port,
    username: "postgres",
    password: Redacted.make(pg.password),
    database: "postgres"
  })
})

/** A runner: the cluster's socket layer, on `port`, over its PostgreSQL storage, serving the tasks in a local pool. */
export const runnerLayer = (
  pg: Connection,
  port: number,
  pool: ProcessPool.RunnerOptions = { tasks: [Where], worker: import.meta.url, size: 2 }
) =>
  Layer.unwrap(Effect.gen(function*() {
    const socket = yield* Effect.promise(() => import("./socket.ts"))
    const { RunnerAddress } = yield* Effect.promise(() => import("effect/cluster/RunnerAddress"))
    const Option = yield* Effect.promise(() => import("effect/Option"))
    return saysWhy(
      pg,
      ProcessPool.layerRunner(pool).pipe(
        Layer.provideMerge(
          socket.layer({
            clientOnly: false,
            shardingConfig: {
              runnerAddress: Option.some(RunnerAddress.make({ host: "127.0.0.1", port })),
              ...recommended
            }
          }).pipe(
            // With PostgreSQL down, the engine would say so every second. The pool's own lines pass as they are.
            Layer.provide(ProcessPool.layerQuietRepeats)
          )
        ),
        Layer.provideMerge(yield* database(pg))
      )
    )
  }))

/**
 * `layer`, whose failure to reach PostgreSQL as it is built says why: a
 * connection refused and a wrong password read alike in the client's own
 * message, and differ only deep in its causes.
 */
const saysWhy = <A, E, R>(pg: Connection, layer: Layer.Layer<A, E, R>): Layer.Layer<A, E | ConnectError, R> =>
  Layer.catchCause(layer, (cause) => {
    const error = Cause.squash(cause)
    const failed: Effect.Effect<never, E | ConnectError> = Predicate.isTagged(error, "SqlError")
      ? Effect.fail(new ConnectError({ port: pg.port, reason: reasonOf(error) }))
      : Effect.failCause(cause)
    return Layer.unwrap(Effect.as(failed, layer))
  })

/** The client: the `ProcessPool` service, backed by the cluster. */
export const clientLayer = (pg: Connection, options: ProcessPool.ClusterOptions = { tasks: [Where] }) =>
  Layer.unwrap(Effect.gen(function*() {
    const socket = yield* Effect.promise(() => import("./socket.ts"))
    return saysWhy(
      pg,
      ProcessPool.layerCluster(options).pipe(
        Layer.provide(
          socket.layer({ clientOnly: true, shardingConfig: recommended }).pipe(
            Layer.provide(ProcessPool.layerQuietRepeats)
          )
        ),
        Layer.provide(yield* database(pg))
      )
    )
  }))

/**
 * Starts a runner process, `node <args>`, and waits until it prints "ready".
 * It exits when its standard input closes, so it never outlives this
 * process, and it is stopped with the scope (SIGTERM, then SIGKILL after
 * 10 s). The database's password goes in its environment (PGPASSWORD), not
 * on its command line, which any local user can read.
 */
export const startRunner = (args: ReadonlyArray<string>, pg: Connection) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const child = spawn(process.execPath, [...process.execArgv, ...args], {
        stdio: ["pipe", "pipe", "inherit"],
        env: { ...process.env, PGPASSWORD: pg.password }
      })
      yield* Effect.callback<void, Error>((resume) => {
        child.stdout.on("data", (chunk: Buffer) => {
          if (chunk.toString().includes("ready")) resume(Effect.void)
        })
        child.on("exit", (code, signal) => resume(Effect.fail(new Error(`runner exited (${code ?? signal})`))))
      })
      return { pid: child.pid!, child }
    }),
    ({ child }) =>
      Effect.callback<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        // A runner that does not finish its shutdown within 10 s (its storage gone, a peer frozen) is killed.
        const deadline = setTimeout(() => child.kill("SIGKILL"), 10_000)
        child.on("exit", () => {
          clearTimeout(deadline)
          resume(Effect.void)
        })
        child.kill("SIGTERM")
      })
  )

/** In a runner process: the database on `port`, with the password its parent gave (see `startRunner`). */
export const runnersDatabase = (port: number): Connection => ({ port, password: process.env.PGPASSWORD ?? "" })

/** This file as a runner on a free port, with a pool of `size` workers. */
const runner = (pg: Connection, size = 2) =>
  Effect.gen(function*() {
    const port = yield* freePort
    const script = new URL(import.meta.url).pathname
    const { pid } = yield* startRunner([script, "runner", String(pg.port), String(port), String(size)], pg)
    return { pid, port }
  })

const main = Effect.gen(function*() {
  const pg = yield* postgres
  console.log(`PostgreSQL ${pg.port} in ${pg.dir}`)
  const runners = yield* Effect.all([runner(pg), runner(pg)], { concurrency: "unbounded" })
  console.log(`runners ${runners.map((r) => `${r.pid} on 127.0.0.1:${r.port}`).join(", ")}`)

  const inputs = Array.from({ length: 10_000 }, (_, i) => i)
  const started = performance.now()
  const results = yield* ProcessPool.map(Where, inputs).pipe(Effect.provide(clientLayer(pg)))
  const seconds = (performance.now() - started) / 1000
  const wrong = results.filter((r, i) => r.square !== i * i).length
  console.log(`${results.length} tasks in ${seconds.toFixed(2)} s, ${wrong} wrong`)

  const count = (key: (r: typeof results[number]) => number) => {
    const counts = new Map<number, number>()
    for (const r of results) counts.set(key(r), (counts.get(key(r)) ?? 0) + 1)
    return counts
  }
  for (const [pid, n] of count((r) => r.runner)) console.log(`runner ${pid}: ${n}`)
  for (const [pid, n] of count((r) => r.worker)) console.log(`  worker ${pid}: ${n}`)
})

if (import.meta.main) {
  const [role, pgPort, port, size] = process.argv.slice(2)
  if (role === "runner") {
    process.stdin.on("end", () => process.exit(0)).resume()
    Effect.gen(function*() {
      yield* Layer.build(
        runnerLayer(runnersDatabase(Number(pgPort)), Number(port), {
          tasks: [Where],
          worker: import.meta.url,
          size: Number(size)
        })
      )
      process.stdout.write("ready\n")
      return yield* Effect.never
    }).pipe(Effect.scoped, NodeRuntime.runMain)
  } else {
    main.pipe(Effect.scoped, NodeRuntime.runMain)
  }
}
