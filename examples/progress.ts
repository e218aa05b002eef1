// examples/progress.ts
//
// A long CPU-bound task that reports its progress while it runs. Its handler
// returns a Stream: a Progress item after each 1% of the work, then one Done
// with the result, as one Schema union. In a terminal, main draws a live bar
// per task; otherwise it prints a line every 10%.
//
// Python's ProcessPoolExecutor gives a running task no way to report progress:
// you would pass it a multiprocessing Manager().Queue() and drain that by hand.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ProcessPool, Task, Worker } from "effect-process-pool"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"

// The contract: the task's items are Progress updates, then one Done.
export const Progress = Schema.TaggedStruct("Progress", { done: Schema.Int, total: Schema.Int })
export const Done = Schema.TaggedStruct("Done", { digest: Schema.String })

export const Hash = Task.make("Hash", {
  payload: Schema.Struct({ seed: Schema.String, rounds: Schema.Int }),
  success: Schema.Union([Progress, Done]),
  stream: true
})

// Hashes the data, then the digest again and again: pure CPU.
const sha256 = (data: Uint8Array, rounds: number) => {
  let d = Buffer.from(data)
  for (let i = 0; i < rounds; i++) d = createHash("sha256").update(d).digest()
  return d
}

// The work runs in 100 steps, one per pull of the stream. Each step yields to
// the event loop first, so an interrupt stops the task between two steps.
export default Worker.handlers(
  Hash.handler(({ rounds, seed }) =>
    Stream.paginate({ done: 0, digest: Buffer.from(seed) }, ({ digest, done }) =>
      Effect.andThen(
        Effect.yieldNow,
        Effect.sync(() => {
          const end = Math.min(rounds, done + Math.ceil(rounds / 100))
          const next = { done: end, digest: sha256(digest, end - done) }
          const progress = Progress.make({ done: next.done, total: rounds })
          return next.done < rounds
            ? [[progress], Option.some(next)] as const
            : [[progress, Done.make({ digest: next.digest.toString("hex") })], Option.none()] as const
        })
      ))
  )
)

interface Bar {
  readonly seed: string
  readonly rounds: number
  readonly started: number
  done: number
  at: number // when `done` was last reported
  digest?: string
}

const line = (bar: Bar): string => {
  const fraction = bar.done / bar.rounds
  const filled = Math.round(fraction * 30)
  const rate = bar.done === 0 ? 0 : bar.done / ((bar.at - bar.started) / 1000)
  const eta = bar.done === bar.rounds ? "done" : rate > 0 ? `ETA ${((bar.rounds - bar.done) / rate).toFixed(1)} s` : ""
  return `${bar.seed.padEnd(6)} ${"█".repeat(filled)}${"░".repeat(30 - filled)} ${
    (fraction * 100).toFixed(0).padStart(3)
  }%  ${(rate / 1e6).toFixed(2)}M rounds/s  ${eta}`
}

// In a terminal: move the cursor back up over the bars and redraw them all.
let drawn = false
const redraw = (bars: ReadonlyArray<Bar>) => {
  const up = drawn ? `\x1b[${bars.length}A` : ""
  process.stdout.write(up + bars.map((bar) => `\r${line(bar)}\x1b[K\n`).join(""))
  drawn = true
}

const tenths = (bar: Bar) => Math.floor((bar.done / bar.rounds) * 10)

const main = Effect.gen(function*() {
  const started = performance.now()
  const bars: Array<Bar> = [
    { seed: "alpha", rounds: 2_000_000, started, done: 0, at: started },
    { seed: "beta", rounds: 3_000_000, started, done: 0, at: started }
  ]
  if (process.stdout.isTTY) redraw(bars)
  // Both tasks at once, one per worker. Items arrive while their task still runs, and all 101 of
  // them fit in the default window (128 items), so a worker never waits for the bars to be drawn.
  yield* Effect.forEach(bars, (bar) =>
    ProcessPool.submit(Hash, { seed: bar.seed, rounds: bar.rounds }).pipe(
      Stream.runForEach((item) =>
        Effect.sync(() => {
          if (item._tag === "Done") {
            bar.digest = item.digest
          } else {
            const before = tenths(bar)
            bar.done = item.done
            bar.at = performance.now()
            if (process.stdout.isTTY) redraw(bars)
            else if (tenths(bar) > before) console.log(line(bar))
          }
        })
      )
    ), { concurrency: "unbounded" })

  for (const bar of bars) {
    console.log(`${bar.seed}: ${bar.rounds.toLocaleString("en-US")} rounds of SHA-256 -> ${bar.digest}`)
  }
  console.log(`total: ${((performance.now() - started) / 1000).toFixed(2)} s`)
})

if (import.meta.main) {
  main.pipe(Effect.provide(ProcessPool.layer({ worker: import.meta.url, size: 2 })), NodeRuntime.runMain)
}
