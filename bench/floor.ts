/**
 * The floor under case 1: what 100,000 tiny tasks submitted at once cost
 * Effect itself, with no pool at all. Each "task" is an `Effect.callback`
 * answered a tick later in a batch, as a pool's answers come; the loop is the
 * one case 1 runs (`Effect.forEach`, unbounded). Prints tasks/s and the CPU
 * per task of this process, five times.
 *
 * Then the same loop through a pool of 2 worker processes, five times: the
 * CPU per task of this process (the floor and the pool's own part), and of
 * its workers together (read from /proc).
 *
 *   npm run build && node bench/floor.ts
 */
import { ProcessPool } from "effect-process-pool"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import { Square } from "./tasks.ts"

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
      `floor: ${(n / ms * 1000).toFixed(0)} tasks/s, ${((used.user + used.system) / n).toFixed(2)} µs of CPU per task`
    )
  }
}))

/** User and system CPU time of processes, in µs, from /proc; 0 where it cannot be read. */
const cpuOf = (pids: ReadonlyArray<number>): number =>
  pids.reduce((total, pid) => {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      return total + (Number(fields[11]) + Number(fields[12])) * 10_000
    } catch {
      return total
    }
  }, 0)

await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
  const pool = yield* ProcessPool.make({ worker: new URL("./worker.ts", import.meta.url), size: 2 })
  const pids = (yield* pool.stats).workers.map((worker) => worker.pid)
  yield* Effect.forEach(xs.slice(0, 20_000), (x) => pool.submit(Square, x), { concurrency: "unbounded" })
  for (let round = 0; round < 5; round++) {
    const cpu = process.cpuUsage()
    const workers = cpuOf(pids)
    const start = performance.now()
    yield* Effect.forEach(xs, (x) => pool.submit(Square, x), { concurrency: "unbounded" })
    const ms = performance.now() - start
    const used = process.cpuUsage(cpu)
    console.log(
      `pool: ${(n / ms * 1000).toFixed(0)} tasks/s, ${((used.user + used.system) / n).toFixed(2)} µs of CPU per task ` +
        `in this process, ${((cpuOf(pids) - workers) / n).toFixed(2)} µs in its workers`
    )
  }
})))
