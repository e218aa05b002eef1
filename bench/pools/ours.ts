/**
 * effect-process-pool, used the way the README shows: a scoped pool, `submit`
 * per task, `map` with automatic chunking.
 */
import * as ProcessPool from "effect-process-pool/ProcessPool"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import { Checksum, Digest, Square } from "../tasks.ts"
import type { Adapter } from "./types.ts"

export const make = (): Adapter => makeWith("process")

/** Ours with workers of either kind: processes (the default), or threads (bench/pools/ours-thread.ts). */
export const makeWith = (isolation: "process" | "thread"): Adapter => {
  const scope = Scope.makeUnsafe()
  let pool!: ProcessPool.ProcessPool["Service"]
  return {
    start: async () => {
      pool = await Effect.runPromise(
        Scope.provide(scope)(ProcessPool.make({ worker: new URL("../worker.ts", import.meta.url), size: 2, isolation }))
      )
    },
    pids: async () => (await Effect.runPromise(pool.stats)).workers.map((w) => w.pid),
    squareMany: (xs) =>
      Effect.runPromise(Effect.forEach(xs, (x) => pool.submit(Square, x), { concurrency: "unbounded" })),
    map: (xs) => Effect.runPromise(pool.map(Square, xs, { chunkSize: "auto" })),
    mapNote: "pool.map, chunkSize \"auto\"",
    latency: (n) =>
      Effect.runPromise(Effect.gen(function*() {
        const out = new Array<number>(n)
        for (let i = 0; i < n; i++) {
          const t = performance.now()
          const r = yield* pool.submit(Square, i)
          out[i] = performance.now() - t
          if (r !== i * i) return yield* Effect.die(new Error(`wrong answer ${r} for ${i}`))
        }
        return out
      })),
    digestMany: (inputs) =>
      Effect.runPromise(Effect.forEach(inputs, (input) => pool.submit(Digest, input), { concurrency: "unbounded" })),
    checksumMany: (payloads, count, inFlight) =>
      Effect.runPromise(
        Effect.forEach(
          Array.from({ length: count }, (_, i) => payloads[i % payloads.length]),
          (payload) => pool.submit(Checksum, payload),
          { concurrency: inFlight }
        )
      ),
    payloadNote: "Schema.Uint8Array in the task's payload Schema",
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
