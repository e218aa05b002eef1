/**
 * The cluster tests' real parts: an embedded PostgreSQL server, runner
 * processes, and the client layer of the test process itself. The server and
 * the layers are those of examples/cluster.ts, so the tests run the example's
 * set-up too.
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import { clientLayer, startRunner } from "../examples/cluster.ts"
import { type Connection, freePort } from "../examples/postgres.ts"
import { clusterTasks } from "./fixtures/cluster-tasks.ts"
import { Unserved } from "./fixtures/tasks.ts"
import { fixture, isAlive, waitUntil } from "./helpers.ts"

/** A runner process. */
export interface Runner {
  readonly pid: number
  readonly port: number
}

/** `count` runner processes on one PostgreSQL, started at once. */
export const startRunners = (pg: Connection, count: number) =>
  Effect.all(Array.from({ length: count }, () => runner(pg)), { concurrency: "unbounded" })

/**
 * Starts a runner process with a local pool of `size` workers, as the example
 * does, and waits until it is ready. Closing the scope ends it and checks
 * that its workers are gone too.
 */
export const runner = (pg: Connection, size = 2, mode: "volatile" | "persisted" = "volatile") =>
  Effect.gen(function*() {
    const port = yield* freePort
    let workers: Array<number> = []
    yield* Effect.addFinalizer(() =>
      waitUntil("the runner's workers to exit", () => workers.every((pid) => !isAlive(pid)), 10_000).pipe(Effect.orDie)
    )
    const { pid } = yield* startRunner([
      fixture("cluster-runner.ts").pathname,
      String(pg.port),
      String(port),
      String(size),
      mode
    ], pg)
    // Runs before the runner is stopped: who its workers were.
    yield* Effect.addFinalizer(() => Effect.sync(() => workers = childrenOf(pid)))
    return { pid, port } satisfies Runner
  })

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

/**
 * The `ProcessPool` service of the test process, through the cluster, as the
 * example builds it. It knows one task more than the runners serve.
 */
export const clusterPool = (pg: Connection, mode: "volatile" | "persisted" = "volatile") =>
  clientLayer(pg, { tasks: [...clusterTasks, Unserved], persisted: mode === "persisted" })

/** The example's PostgreSQL: a real server in a temporary directory, stopped and removed with the scope. */
export { postgres } from "../examples/postgres.ts"
