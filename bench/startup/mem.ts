import { ProcessPool } from "effect-process-pool"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import { Square } from "../tasks.ts"
const rss = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024
const extra = process.env.SEMI ? [`--max-semi-space-size=${process.env.SEMI}`] : []
const program = Effect.scoped(Effect.gen(function*() {
  const pool = yield* ProcessPool.make({
    worker: new URL("../worker.ts", import.meta.url),
    size: 2,
    bundle: process.env.NB ? false : undefined,
    execArgv: extra
  })
  yield* pool.submit(Square, 7)
  yield* Effect.sleep(1500)
  const stats = yield* pool.stats
  const w = stats.workers.map((x) => rss(x.pid))
  console.log(`parent ${rss(process.pid).toFixed(1)} workers ${w.map((x) => x.toFixed(1)).join(" ")}`)
}))
Effect.runPromise(program).then(() => process.exit(0))
