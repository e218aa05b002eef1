/**
 * workerpool with workerType "process": 2 child processes, defaults otherwise.
 * Its channel is JSON by default; case 7 uses a second pool forked with
 * `serialization: "advanced"` so that a Uint8Array can cross at all.
 */
import workerpool from "workerpool"
import { type Adapter, bounded, chunkedMap, latencyOf, MAP_CHUNK } from "./types.ts"

const script = new URL("../peers/workerpool-worker.ts", import.meta.url).pathname

const makePool = (advanced: boolean) =>
  workerpool.pool(script, {
    workerType: "process",
    minWorkers: 2,
    maxWorkers: 2,
    ...(advanced ? { forkOpts: { serialization: "advanced" as const } } : {})
  })

export const make = (): Adapter => {
  let pool!: workerpool.Pool
  return {
    start: async () => {
      pool = makePool(false)
      await Promise.all([pool.exec("square", [1]), pool.exec("square", [2])])
    },
    squareMany: (xs) => Promise.all(xs.map((x) => pool.exec("square", [x]))),
    map: (xs) => chunkedMap(xs, MAP_CHUNK, (chunk) => pool.exec("squareAll", [chunk])),
    mapNote: `emulated: chunks of ${MAP_CHUNK} items, one exec() per chunk`,
    latency: (n) => latencyOf(n, (i) => pool.exec("square", [i])),
    digestMany: (inputs) => Promise.all(inputs.map((input) => pool.exec("digest", [input]))),
    checksumMany: async (payloads, count, inFlight) => {
      const big = makePool(true)
      try {
        return await bounded(count, inFlight, (i) => big.exec("checksum", [payloads[i % payloads.length]]))
      } finally {
        await big.terminate()
      }
    },
    payloadNote:
      "a second pool forked with serialization \"advanced\" (v8); the default JSON channel cannot carry bytes",
    close: async () => {
      await pool.terminate()
    }
  }
}
