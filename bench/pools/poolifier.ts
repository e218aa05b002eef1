/**
 * poolifier's FixedClusterPool: 2 cluster workers (processes), defaults
 * otherwise. Cluster IPC is JSON by default; case 7 uses a second pool with
 * `settings: { serialization: "advanced" }` so that a Uint8Array can cross at all.
 */
import { FixedClusterPool } from "poolifier"
import { type Adapter, bounded, chunkedMap, latencyOf, MAP_CHUNK } from "./types.ts"

const filePath = new URL("../peers/poolifier-worker.ts", import.meta.url).pathname

const makePool = async (advanced: boolean) => {
  const pool = new FixedClusterPool<any, any>(2, filePath, advanced ? { settings: { serialization: "advanced" } } : {})
  await Promise.all([pool.execute(1, "square"), pool.execute(2, "square")])
  return pool
}

export const make = (): Adapter => {
  let pool!: FixedClusterPool<any, any>
  return {
    start: async () => {
      pool = await makePool(false)
    },
    squareMany: (xs) => Promise.all(xs.map((x) => pool.execute(x, "square"))),
    map: (xs) => chunkedMap(xs, MAP_CHUNK, (chunk) => pool.execute(chunk, "squareAll")),
    mapNote: `emulated: chunks of ${MAP_CHUNK} items, one execute() per chunk (mapExecute sends one task per item)`,
    latency: (n) => latencyOf(n, (i) => pool.execute(i, "square")),
    digestMany: (inputs) => Promise.all(inputs.map((input) => pool.execute(input, "digest"))),
    checksumMany: async (payloads, count, inFlight) => {
      const big = await makePool(true)
      try {
        return await bounded(count, inFlight, (i) => big.execute(payloads[i % payloads.length], "checksum"))
      } finally {
        await big.destroy()
      }
    },
    payloadNote:
      "a second pool with cluster serialization \"advanced\" (v8); the default JSON channel cannot carry bytes",
    close: () => pool.destroy()
  }
}
