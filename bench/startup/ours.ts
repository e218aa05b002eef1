/**
 * Case 5: program start to first result with effect-process-pool, 2 workers.
 * With `--permissions`, the workers start under Node's permission model,
 * allowed nothing more (bench/permissions.ts compares the two).
 */
import { ProcessPool } from "effect-process-pool"
import * as Effect from "effect/Effect"
import { Square } from "../tasks.ts"

const program = Effect.scoped(Effect.gen(function*() {
  const pool = yield* ProcessPool.make({
    worker: new URL("../worker.ts", import.meta.url),
    size: 2,
    ...(process.argv.includes("--permissions") ? { permissions: {} } : {})
  })
  const result = yield* pool.submit(Square, 7)
  process.stdout.write(`FIRST ${result}\n`)
}))

Effect.runPromise(program).then(() => process.exit(0))
