import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { StartHelper } from "./fixtures/process-worker.ts"
import { fixture, isAlive, poolLayer, stats, tempFile, waitUntil, workerPids } from "./helpers.ts"

// The helpers sleep for 600 s. An outcome that waits for them would come after
// the test's timeout: these bounds only keep such a failure short and clean.
const bound = 30_000

const layer = (options: Partial<ProcessPool.Options> = {}) =>
  poolLayer({ worker: fixture("process-worker.ts"), size: 1, ...options })

/** The pid a helper recorded in `file`, once it has. */
const helperPid = (file: string) =>
  waitUntil("the helper's pid", () => fs.existsSync(file) && fs.readFileSync(file, "utf8") !== "").pipe(
    Effect.map(() => Number(fs.readFileSync(file, "utf8")))
  )

/** Kills what the test started and left alive: a failing test must not leave sleeps behind. */
const cleanUp = (files: ReadonlyArray<string>) =>
  Effect.sync(() => {
    for (const file of files) {
      const pid = fs.existsSync(file) ? Number(fs.readFileSync(file, "utf8")) : 0
      if (pid > 0 && isAlive(pid)) process.kill(pid, "SIGKILL")
    }
  })

/** Waits, without interrupting it, until `fiber` has ended, and returns its exit. */
const outcome = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  waitUntil("the caller's outcome", () => fiber.pollUnsafe() !== undefined, bound).pipe(
    Effect.andThen(Fiber.await(fiber))
  )

/** The error an exit failed with. */
const failureOf = (exit: Exit.Exit<unknown, unknown>) => {
  assert(Exit.isFailure(exit))
  return Cause.squash(exit.cause)
}

describe("processes a worker starts", () => {
  for (const then of ["exit", "kill"] as const) {
    it.live(`a worker that dies (${then}) while its helper holds stderr: the caller hears at once, the helper goes`, () => {
      const file = tempFile("helper")
      return Effect.gen(function*() {
        const [pid] = yield* workerPids
        const fiber = yield* Effect.forkChild(ProcessPool.submit(StartHelper, { file, then }))
        const helper = yield* helperPid(file)
        const error = failureOf(yield* outcome(fiber))
        assert.instanceOf(error, PoolError.WorkerCrashed)
        expect(error.pid).toBe(pid)
        if (then === "exit") expect(error.exitCode).toBe(3)
        else expect(error.signal).toBe("SIGKILL")
        yield* waitUntil("the helper to go with its worker", () => !isAlive(helper))
        // The replacement did not wait for the helper either.
        yield* waitUntil(
          "a replacement",
          Effect.map(stats, (s) => s.workers.some((w) => w.state === "ready" && w.pid !== pid))
        )
      }).pipe(Effect.provide(layer()), Effect.ensuring(cleanUp([file])))
    })
  }

  it.live("a task that times out and is killed after the grace: TaskTimeout at once, and its helper goes", () => {
    const file = tempFile("helper")
    return Effect.gen(function*() {
      const [pid] = yield* workerPids
      const fiber = yield* Effect.forkChild(ProcessPool.submit(StartHelper, { file, then: "spin" }, { timeout: 200 }))
      const helper = yield* helperPid(file)
      const error = failureOf(yield* outcome(fiber))
      assert.instanceOf(error, PoolError.TaskTimeout)
      yield* waitUntil("the worker to be killed", () => !isAlive(pid))
      yield* waitUntil("the helper to go with its worker", () => !isAlive(helper))
    }).pipe(Effect.provide(layer({ interruptGrace: 300 })), Effect.ensuring(cleanUp([file])))
  })

  it.live("an interrupted task whose worker is killed after the grace: the interruption returns, the helper goes", () => {
    const file = tempFile("helper")
    return Effect.gen(function*() {
      const fiber = yield* Effect.forkChild(ProcessPool.submit(StartHelper, { file, then: "spin" }))
      const helper = yield* helperPid(file)
      const interrupted = yield* Effect.forkChild(Fiber.interrupt(fiber))
      yield* outcome(interrupted)
      yield* waitUntil("the helper to go with its worker", () => !isAlive(helper))
    }).pipe(Effect.provide(layer({ interruptGrace: 300 })), Effect.ensuring(cleanUp([file])))
  })

  it.live("a recycled worker takes the helpers it left running with it", () => {
    const files = [tempFile("helper"), tempFile("helper")]
    return Effect.gen(function*() {
      const first = yield* ProcessPool.submit(StartHelper, { file: files[0], then: "return" })
      const second = yield* ProcessPool.submit(StartHelper, { file: files[1], then: "return" })
      yield* waitUntil("both helpers to go with their recycled workers", () => !isAlive(first) && !isAlive(second))
      expect((yield* stats).crashes).toBe(0)
    }).pipe(Effect.provide(layer({ maxTasksPerWorker: 1 })), Effect.ensuring(cleanUp(files)))
  })

  for (const mode of ["drain", "interrupt"] as const) {
    it.live(`closing the pool (${mode}) ends at once and takes every helper with the workers`, () => {
      const files = [tempFile("helper"), tempFile("helper")]
      return Effect.gen(function*() {
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(
          layer({ size: 2, shutdown: mode, interruptGrace: 300, shutdownTimeout: 120_000 }),
          scope
        )
        const pool = Context.getUnsafe(context, ProcessPool.ProcessPool)
        const pids = (yield* pool.stats).workers.map((w) => w.pid)
        // One helper left behind by a finished task, one started by a task still running.
        const left = yield* pool.submit(StartHelper, { file: files[0], then: "return" })
        const running = yield* Effect.forkChild(Effect.exit(pool.submit(StartHelper, { file: files[1], then: "spin" })))
        const helper = yield* helperPid(files[1])
        if (mode === "drain") yield* Fiber.interrupt(running)
        const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
        yield* outcome(closing)
        if (mode === "interrupt") {
          const error = failureOf(yield* Fiber.join(running))
          assert.instanceOf(error, PoolError.PoolClosed)
        }
        expect(pids.filter(isAlive)).toEqual([])
        yield* waitUntil("the helpers to go with their workers", () => !isAlive(left) && !isAlive(helper))
      }).pipe(Effect.ensuring(cleanUp(files)))
    })
  }

  it.live("a SIGKILLed parent leaves no helper behind: its workers' watchdogs take their groups down", () => {
    const files = [tempFile("helper"), tempFile("helper")]
    let workers: Array<number> = []
    return Effect.gen(function*() {
      const parent = spawn(process.execPath, [fixture("helper-parent.ts").pathname, ...files], {
        stdio: ["ignore", "pipe", "inherit"]
      })
      const started = yield* Effect.callback<{ workers: Array<number>; helper: number }, Error>((resume) => {
        let out = ""
        parent.stdout!.on("data", (chunk) => {
          out += chunk
          if (out.includes("\n")) resume(Effect.succeed(JSON.parse(out)))
        })
        parent.on("exit", (code) => resume(Effect.fail(new Error(`parent exited early with ${code}`))))
      })
      workers = started.workers
      const helpers = [started.helper, yield* helperPid(files[1])]
      expect([...workers, ...helpers].every(isAlive)).toBe(true)
      parent.kill("SIGKILL")
      yield* waitUntil(
        "the workers and helpers of the killed parent to exit",
        () => ![...workers, ...helpers].some(isAlive)
      )
    }).pipe(
      Effect.ensuring(cleanUp(files)),
      Effect.ensuring(Effect.sync(() => workers.filter(isAlive).forEach((pid) => process.kill(pid, "SIGKILL"))))
    )
  })
})

describe("process groups", () => {
  /** The process group of a process, from /proc. */
  const groupOf = (pid: number): number => {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2])
  }

  it.live("each worker leads a group of its own by default; processGroups: false keeps it in the parent's", () =>
    Effect.gen(function*() {
      const [own, plain] = yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* ProcessPool.make({ worker: fixture("worker.ts"), size: 1, inheritStderr: false })
        const b = yield* ProcessPool.make({
          worker: fixture("worker.ts"),
          size: 1,
          inheritStderr: false,
          processGroups: false
        })
        const pidA = (yield* a.stats).workers[0].pid
        const pidB = (yield* b.stats).workers[0].pid
        return [[pidA, groupOf(pidA)], [pidB, groupOf(pidB)]] as const
      }))
      expect(own[1]).toBe(own[0])
      expect(plain[1]).toBe(groupOf(process.pid))
    }))
})
