/**
 * The pool's events, on real processes: what metrics and logs will hang on.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import type { Reply } from "../src/internal/processes/entry.ts"
import type { WorkerExitReason } from "../src/internal/processes/killReason.ts"
import type { PoolEvents } from "../src/internal/telemetry/events.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { Sleep, Spin, Square } from "./fixtures/tasks.ts"
import { fixture, waitUntil } from "./helpers.ts"

describe("events", () => {
  it.live("queued, sent, started, settled, worker started and worker exited with its reason", () =>
    Effect.gen(function*() {
      const seen = {
        queued: 0,
        sent: 0,
        started: 0,
        settled: [] as Array<Reply>,
        workersStarted: [] as Array<number>,
        workersExited: [] as Array<[number, WorkerExitReason]>
      }
      const events: PoolEvents = {
        queued: () => void seen.queued++,
        sent: () => void seen.sent++,
        started: () => void seen.started++,
        settled: (_, reply) => void seen.settled.push(reply),
        workerStarted: (pid) => void seen.workersStarted.push(pid),
        workerExited: (pid, reason) => void seen.workersExited.push([pid, reason])
      }
      const scope = yield* Scope.make()
      const pool = yield* Scope.provide(
        ProcessPool.makeWith(
          { worker: fixture("worker.ts"), size: 1, inheritStderr: false, prefetch: 1, interruptGrace: 200 },
          { events }
        ),
        scope
      )
      expect(seen.workersStarted.length).toBe(1)
      yield* Effect.forEach([1, 2, 3, 4, 5], (n) => pool.submit(Square, n), { concurrency: "unbounded" })
      expect(seen.sent).toBe(5)
      expect(seen.started).toBe(5)
      // One worker with room for two: three waited in the queue.
      expect(seen.queued).toBe(3)
      expect(seen.settled.length).toBe(5)
      // A runaway: killed after interruptGrace, and said so.
      const [first] = seen.workersStarted
      const spin = yield* Effect.forkChild(pool.submit(Spin, 30_000))
      yield* Effect.sleep(200)
      yield* Fiber.interrupt(spin)
      yield* waitUntil("the runaway's exit", () => seen.workersExited.length === 1)
      expect(seen.workersExited[0]).toEqual([first, "runaway"])
      yield* waitUntil("its replacement", () => seen.workersStarted.length === 2)
      expect(yield* pool.submit(Sleep, { ms: 1 })).toBe(seen.workersStarted[1])
      yield* Scope.close(scope, Exit.void)
      expect(seen.workersExited[1]).toEqual([seen.workersStarted[1], "shutdown"])
    }))

  it.live("a pool without hooks calls none", () =>
    Effect.gen(function*() {
      const pool = yield* ProcessPool.make({ worker: fixture("worker.ts"), size: 1, inheritStderr: false })
      expect(yield* pool.submit(Square, 3)).toBe(9)
    }).pipe(Effect.scoped))
})
