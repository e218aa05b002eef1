import { ProcessPool } from "effect-process-pool"
import * as Effect from "effect/Effect"
import { Square } from "../tasks.ts"
const mu = (l: string) => {
  const m = process.memoryUsage()
  console.log(
    l.padEnd(12),
    "rss",
    (m.rss / 1e6).toFixed(1),
    "heapTotal",
    (m.heapTotal / 1e6).toFixed(1),
    "heapUsed",
    (m.heapUsed / 1e6).toFixed(1),
    "ext",
    (m.external / 1e6).toFixed(1),
    "ab",
    (m.arrayBuffers / 1e6).toFixed(1)
  )
}
mu("imports")
const program = Effect.scoped(Effect.gen(function*() {
  const pool = yield* ProcessPool.make({ worker: new URL("../worker.ts", import.meta.url), size: 2 })
  mu("made")
  yield* pool.submit(Square, 7)
  mu("submitted")
  yield* Effect.forEach([1, 2, 3, 4], (x) => pool.submit(Square, x), { concurrency: "unbounded" })
  yield* Effect.sleep(1000)
  mu("idle 1s")
  ;(globalThis as any).gc?.()
  mu("after gc")
}))
Effect.runPromise(program).then(() => process.exit(0))
