/**
 * The floor under case 1: what 100,000 tiny tasks submitted at once cost
 * Effect itself, with no pool at all. Each "task" is an `Effect.callback`
 * answered a tick later in a batch, as a pool's answers come; the loop is the
 * one case 1 runs (`Effect.forEach`, unbounded). Prints tasks/s and the CPU
 * per task of this process, five times.
 *
 *   node bench/floor.ts
 */
import * as Effect from "effect/Effect"

const n = 100_000
const xs = Array.from({ length: n }, (_, i) => i)

let pending: Array<() => void> = []
const answer = () => {
  const batch = pending
  pending = []
  for (const resume of batch) resume()
}
const fake = (x: number) =>
  Effect.callback<number>((resume) => {
    if (pending.length === 0) setImmediate(answer)
    pending.push(() => resume(Effect.succeed(x * x)))
  })

await Effect.runPromise(Effect.gen(function*() {
  for (let round = 0; round < 5; round++) {
    const cpu = process.cpuUsage()
    const start = performance.now()
    yield* Effect.forEach(xs, fake, { concurrency: "unbounded" })
    const ms = performance.now() - start
    const used = process.cpuUsage(cpu)
    console.log(
      `${(n / ms * 1000).toFixed(0)} tasks/s, ${((used.user + used.system) / n).toFixed(2)} µs of CPU per task`
    )
  }
}))
