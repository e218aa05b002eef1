import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { spawn } from "node:child_process"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { Square } from "./fixtures/tasks.ts"
import { fixture, isAlive, poolLayer, waitUntil, workerPids } from "./helpers.ts"

const buildFails = (worker: string) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(Layer.build(poolLayer({ worker: fixture(worker) })))
    assert(Exit.isFailure(exit))
    const error = exit.cause.reasons[0]._tag === "Fail" ? exit.cause.reasons[0].error : undefined
    assert.instanceOf(error, PoolError.WorkerStartError)
    // Seen from the child's exit, not found later by the start timeout.
    expect(error.message).not.toContain("did not become ready")
    return error
  })

describe("start-up", () => {
  it.live("a module that throws on import fails the layer with WorkerStartError and its stderr", () =>
    Effect.gen(function*() {
      const error = yield* buildFails("throws-on-import.ts")
      // What the worker wrote is in stderr; its error is in the message alone, so that it prints once.
      expect(error.stderr).toContain("about to fail: missing configuration FOO_URL")
      expect(error.stderr).not.toContain("FOO_URL is not set")
      // The worker's own error comes first.
      expect(error.message).toMatch(/^Error: FOO_URL is not set\n/)
      expect(error.message).toContain("could not start")
    }))

  it.live("a module without a Worker.handlers default export fails with a clear message", () =>
    Effect.gen(function*() {
      const error = yield* buildFails("no-handlers.ts")
      expect(error.message).toContain("no Worker.handlers(...) default export")
    }))

  it.live("a module whose services fail to build fails with WorkerStartError", () =>
    Effect.gen(function*() {
      const error = yield* buildFails("layer-fails.ts")
      expect(error.message).toContain("database unreachable at db:5432")
    }))

  it.live("a worker that does not become ready in time fails the layer", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(
        Layer.build(poolLayer({ worker: fixture("slow-start.ts"), startTimeout: 300 }))
      )
      assert(Exit.isFailure(exit))
      const error = exit.cause.reasons[0]._tag === "Fail" ? exit.cause.reasons[0].error : undefined
      assert.instanceOf(error, PoolError.WorkerStartError)
      expect(error.message).toContain("did not become ready within 300 ms")
    }))
})

describe("no orphans", () => {
  it.live("closing the scope stops every worker", () =>
    Effect.gen(function*() {
      const pids = yield* Effect.scoped(
        Effect.gen(function*() {
          const pids = yield* workerPids
          expect(yield* ProcessPool.submit(Square, 2)).toBe(4)
          return pids
        }).pipe(Effect.provide(poolLayer()))
      )
      expect(pids.length).toBe(2)
      // The layer's release waits for the workers to exit.
      expect(pids.filter(isAlive)).toEqual([])
    }))

  it.live("a SIGKILLed parent leaves no worker behind, even one stuck in a CPU-bound loop", () =>
    Effect.gen(function*() {
      const parent = spawn(process.execPath, [fixture("parent.ts").pathname], { stdio: ["ignore", "pipe", "inherit"] })
      const pids = yield* Effect.callback<Array<number>, Error>((resume) => {
        let out = ""
        parent.stdout!.on("data", (chunk) => {
          out += chunk
          if (out.includes("\n")) resume(Effect.succeed(JSON.parse(out)))
        })
        parent.on("exit", (code) => resume(Effect.fail(new Error(`parent exited early with ${code}`))))
      })
      expect(pids.length).toBe(2)
      expect(pids.every(isAlive)).toBe(true)
      parent.kill("SIGKILL")
      yield* waitUntil("the workers of the killed parent to exit", () => !pids.some(isAlive), 3_000).pipe(
        // Should this fail, leave no process behind for the next tests.
        Effect.ensuring(Effect.sync(() => pids.filter(isAlive).forEach((pid) => process.kill(pid, "SIGKILL"))))
      )
    }))
})
