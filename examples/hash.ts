// examples/hash.ts
//
// CPU-bound work: iterated SHA-256 over 200 buffers of 4 KiB, first serially in
// this process, then with ProcessPool.stream over one worker per available CPU.
// While the pool works, a progress bar follows it: done and total, rate, ETA
// and workers busy, from the pool's `statsStream`. In a terminal the bar is
// redrawn in place; otherwise a plain line is printed every 10%.
//
//   npm run example examples/hash.ts [buffers]
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ProcessPool, Task, Worker } from "effect-process-pool"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { createHash, randomBytes } from "node:crypto"
import * as os from "node:os"

const BUFFERS = Number(process.argv[2] ?? 200)
const BUFFER_SIZE = 4096
const ROUNDS = 8_000 // about 10 to 20 ms per buffer

// Hashes the buffer, then hashes the digest again and again: pure CPU.
const digest = (data: Uint8Array, rounds: number): string => {
  let d = createHash("sha256").update(data).digest()
  for (let i = 1; i < rounds; i++) d = createHash("sha256").update(d).digest()
  return d.toString("hex")
}

export const Digest = Task.make("Digest", {
  payload: Schema.Struct({ data: Schema.Uint8Array, rounds: Schema.Int }),
  success: Schema.String
})

export default Worker.handlers(Digest.handler(({ data, rounds }) => Effect.sync(() => digest(data, rounds))))

const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`

/**
 * Draws the progress of `total` items, `done()` of them done since
 * `started`, with a snapshot of the pool: a bar redrawn in place in a
 * terminal, else a plain line at every 10%.
 */
const progressBar = (total: number, done: () => number, started: number) => {
  const tty = process.stdout.isTTY === true
  let printedTenths = -1
  return (stats: ProcessPool.Stats, last = false): void => {
    const n = done()
    const elapsed = (performance.now() - started) / 1000
    const rate = elapsed > 0 ? n / elapsed : 0
    const eta = rate > 0 ? `${((total - n) / rate).toFixed(1)} s` : "?"
    const busy = `${stats.workers.filter((w) => w.busy).length}/${stats.workers.length} workers busy`
    const text = `${n}/${total} ${((100 * n) / total).toFixed(0)}%  ${rate.toFixed(1)}/s  ETA ${eta}  ${busy}`
    if (tty) {
      const filled = Math.round((30 * n) / total)
      process.stdout.write(`\r[${"#".repeat(filled)}${".".repeat(30 - filled)}] ${text}\x1b[K${last ? "\n" : ""}`)
      return
    }
    const tenths = Math.floor((10 * n) / total)
    if (tenths > printedTenths || last) {
      printedTenths = tenths
      console.log(`progress: ${text}`)
    }
  }
}

const main = Effect.gen(function*() {
  const size = os.availableParallelism()
  const inputs = Array.from(
    { length: BUFFERS },
    () => ({ data: new Uint8Array(randomBytes(BUFFER_SIZE)), rounds: ROUNDS })
  )

  const t0 = performance.now()
  const serial = inputs.map(({ data, rounds }) => digest(data, rounds))
  const serialMs = performance.now() - t0
  console.log(`serial:   ${BUFFERS} buffers x ${ROUNDS} rounds in ${seconds(serialMs)}`)

  const t1 = performance.now()
  const pooled = yield* Effect.scoped(Effect.gen(function*() {
    const pool = yield* ProcessPool.make({ worker: import.meta.url, size })
    const t2 = performance.now()
    console.log(`pool:     ${size} workers ready in ${seconds(t2 - t1)}`)
    let done = 0
    const draw = progressBar(inputs.length, () => done, t2)
    const drawing = yield* pool.statsStream("100 millis").pipe(
      Stream.runForEach((stats) => Effect.sync(() => draw(stats))),
      Effect.forkChild
    )
    const digests = yield* pool.stream(Digest, inputs).pipe(
      Stream.map((digest) => (done++, digest)),
      Stream.runCollect
    )
    yield* Fiber.interrupt(drawing)
    draw(yield* pool.stats, true)
    const poolMs = performance.now() - t2
    console.log(`parallel: ${BUFFERS} buffers x ${ROUNDS} rounds in ${seconds(poolMs)}`)
    console.log(`speed-up: ${(serialMs / poolMs).toFixed(2)}x on ${size} workers`)
    return digests
  }))

  const same = pooled.length === serial.length && pooled.every((d, i) => d === serial[i])
  console.log(same ? `digests agree (first: ${serial[0]!.slice(0, 16)}...)` : "digests DIFFER")
  if (!same) return yield* Effect.die(new Error("the pool's digests differ from the serial ones"))
})

if (import.meta.main) {
  NodeRuntime.runMain(main)
}
