// examples/hash.ts
//
// CPU-bound work: iterated SHA-256 over 200 buffers of 4 KiB, first serially in
// this process, then with ProcessPool.map over one worker per available CPU.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ProcessPool, Task, Worker } from "effect-process-pool"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import { createHash, randomBytes } from "node:crypto"
import * as os from "node:os"

const BUFFERS = 200
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
    const digests = yield* pool.map(Digest, inputs)
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
