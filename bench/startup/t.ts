const t0 = performance.now()
const { ProcessPool } = await import("effect-process-pool")
const Effect = await import("effect/Effect")
const { Square } = await import("../tasks.ts")
const t1 = performance.now()
const program = Effect.scoped(Effect.gen(function*() {
  const pool = yield* ProcessPool.make({
    worker: new URL("../worker.ts", import.meta.url),
    size: 2,
    bundle: process.env.NB ? false : undefined
  })
  const t2 = performance.now()
  const result = yield* pool.submit(Square, 7)
  const t3 = performance.now()
  process.stdout.write(
    `boot ${t0.toFixed(0)} import ${(t1 - t0).toFixed(0)} make ${(t2 - t1).toFixed(0)} first ${(t3 - t2).toFixed(0)}\n`
  )
}))
Effect.runPromise(program).then(() => process.exit(0))
