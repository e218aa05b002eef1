/**
 * piscina: a pool of worker threads (not processes), 2 threads, defaults otherwise.
 */
import { Piscina } from "piscina"
import { type Adapter, bounded, chunkedMap, latencyOf, MAP_CHUNK } from "./types.ts"

const filename = new URL("../peers/functions.ts", import.meta.url).href

export const make = (): Adapter => {
  let pool!: Piscina
  return {
    start: async () => {
      pool = new Piscina({ filename, minThreads: 2, maxThreads: 2 })
      await Promise.all([pool.run(1, { name: "square" }), pool.run(2, { name: "square" })])
    },
    squareMany: (xs) => Promise.all(xs.map((x) => pool.run(x, { name: "square" }))),
    map: (xs) => chunkedMap(xs, MAP_CHUNK, (chunk) => pool.run(chunk, { name: "squareAll" })),
    mapNote: `emulated: chunks of ${MAP_CHUNK} items, one run() per chunk`,
    latency: (n) => latencyOf(n, (i) => pool.run(i, { name: "square" })),
    digestMany: (inputs) => Promise.all(inputs.map((input) => pool.run(input, { name: "digest" }))),
    checksumMany: (payloads, count, inFlight) =>
      bounded(count, inFlight, (i) => pool.run(payloads[i % payloads.length], { name: "checksum" })),
    payloadNote: "Uint8Array by structured clone (copied between threads)",
    close: () => pool.destroy()
  }
}
