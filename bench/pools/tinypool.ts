/**
 * tinypool with runtime "child_process": 2 child processes, defaults otherwise.
 * Its channel is JSON by default; case 7 uses a second pool with
 * `serialization: "advanced"` so that a Uint8Array can cross at all.
 */
import { Tinypool } from "tinypool"
import { type Adapter, bounded, chunkedMap, latencyOf, MAP_CHUNK } from "./types.ts"

const filename = new URL("../peers/functions.ts", import.meta.url).href

const makePool = (advanced: boolean) =>
  new Tinypool({
    filename,
    runtime: "child_process",
    minThreads: 2,
    maxThreads: 2,
    ...(advanced ? { serialization: "advanced" as const } : {})
  })

export const make = (): Adapter => {
  let pool!: Tinypool
  return {
    start: async () => {
      pool = makePool(false)
      await Promise.all([pool.run(1, { name: "square" }), pool.run(2, { name: "square" })])
    },
    squareMany: (xs) => Promise.all(xs.map((x) => pool.run(x, { name: "square" }))),
    map: (xs) => chunkedMap(xs, MAP_CHUNK, (chunk) => pool.run(chunk, { name: "squareAll" })),
    mapNote: `emulated: chunks of ${MAP_CHUNK} items, one run() per chunk`,
    latency: (n) => latencyOf(n, (i) => pool.run(i, { name: "square" })),
    digestMany: (inputs) => Promise.all(inputs.map((input) => pool.run(input, { name: "digest" }))),
    checksumMany: async (payloads, count, inFlight) => {
      const big = makePool(true)
      try {
        return await bounded(count, inFlight, (i) => big.run(payloads[i % payloads.length], { name: "checksum" }))
      } finally {
        await big.destroy()
      }
    },
    payloadNote: "a second pool with serialization \"advanced\" (v8); the default JSON channel cannot carry bytes",
    close: () => pool.destroy()
  }
}
