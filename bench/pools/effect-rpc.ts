/**
 * Effect 4's own RPC over 2 forked child processes:
 * `RpcClient.layerProtocolWorker({ size: 2 })` on `NodeWorker.layer` spawning
 * `child_process.fork`, defaults otherwise (one request at a time per worker).
 */
import * as NodeWorker from "@effect/platform-node/NodeWorker"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import * as Scope from "effect/Scope"
import { fork } from "node:child_process"
import { Group } from "../peers/effect-rpc-group.ts"
import { type Adapter, MAP_CHUNK } from "./types.ts"

const script = new URL("../peers/effect-rpc-worker.ts", import.meta.url).pathname

const Protocol = RpcClient.layerProtocolWorker({ size: 2 }).pipe(
  Layer.provide(NodeWorker.layer(() => fork(script, [], { execArgv: [] })))
)

const makeClient = Effect.gen(function*() {
  const context = yield* Layer.build(Protocol)
  return yield* RpcClient.make(Group).pipe(Effect.provideContext(context))
})

export const make = (): Adapter => {
  const scope = Scope.makeUnsafe()
  let client!: Effect.Success<typeof makeClient>
  return {
    start: async () => {
      client = await Effect.runPromise(Scope.provide(scope)(makeClient))
      await Effect.runPromise(Effect.all([client.Square(1), client.Square(2)], { concurrency: "unbounded" }))
    },
    squareMany: (xs) => Effect.runPromise(Effect.forEach(xs, (x) => client.Square(x), { concurrency: "unbounded" })),
    map: (xs) => {
      const chunks: Array<Array<number>> = []
      for (let i = 0; i < xs.length; i += MAP_CHUNK) chunks.push(xs.slice(i, i + MAP_CHUNK))
      return Effect.runPromise(
        Effect.map(
          Effect.forEach(chunks, (chunk) => client.SquareAll(chunk), { concurrency: "unbounded" }),
          (parts) => parts.flat()
        )
      )
    },
    mapNote: `emulated: chunks of ${MAP_CHUNK} items, one call per chunk`,
    latency: (n) =>
      Effect.runPromise(Effect.gen(function*() {
        const out = new Array<number>(n)
        for (let i = 0; i < n; i++) {
          const t = performance.now()
          const r = yield* client.Square(i)
          out[i] = performance.now() - t
          if (r !== i * i) return yield* Effect.die(new Error(`wrong answer ${r} for ${i}`))
        }
        return out
      })),
    digestMany: (inputs) =>
      Effect.runPromise(Effect.forEach(inputs, (input) => client.Digest(input), { concurrency: "unbounded" })),
    checksumMany: (payloads, count, inFlight) =>
      Effect.runPromise(
        Effect.forEach(
          Array.from({ length: count }, (_, i) => payloads[i % payloads.length]),
          (payload) => client.Checksum(payload),
          { concurrency: inFlight }
        )
      ),
    payloadNote: "Schema.Uint8Array in the Rpc payload (JSON codec: base64 over fork IPC)",
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}
