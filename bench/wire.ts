/**
 * What case 7's payload costs to cross between threads, step by step, in µs
 * of one thread's time: the floor under the bytes figure, for ours and for
 * piscina. Medians of 5 runs of 300 calls each.
 *
 *   npm run build && node bench/wire.ts
 *
 * - Ours, a task declared `serialization: "binary"`, with the pool's own
 *   functions: the task's codec (the payload's Schema, checked and encoded in
 *   the caller, checked and decoded in the worker), V8's serializer through
 *   `node:v8` (the 1 MiB array left out of it and copied once into the frame
 *   that moves to the thread), and V8's deserializer through `node:v8` in the
 *   worker.
 * - piscina: `postMessage` of the object itself, which V8's structured clone
 *   serializes in the caller (copying the array) and deserializes in the
 *   thread (copying it again); `structuredClone` does both.
 */
import { Binary, decodeBinary } from "../src/internal/wire/binary.ts"
import { codecFor } from "../src/internal/wire/codec.ts"
import { Checksum } from "./tasks.ts"
import { makeBytes, makeDoc } from "./work.ts"

const payload = { doc: makeDoc(1), bytes: makeBytes(1 << 20, 7) }

const time = (name: string, f: () => unknown): number => {
  for (let i = 0; i < 300; i++) f()
  const runs: Array<number> = []
  for (let run = 0; run < 5; run++) {
    const start = performance.now()
    for (let i = 0; i < 300; i++) f()
    runs.push((performance.now() - start) / 300 * 1000)
  }
  const us = runs.sort((a, b) => a - b)[2]
  console.log(`${name.padEnd(58)} ${us.toFixed(1).padStart(7)} µs`)
  return us
}

// The pool's own steps, from its source: what a task of case 7 goes through.
const codec = codecFor(Checksum)
const encoded = codec.encodePayload(payload)
const frame = Binary.encode(encoded).bytes
const decoded = decodeBinary(frame)
console.log("ours, in the caller")
time("  the task's codec: the payload checked and encoded", () => codec.encodePayload(payload))
time("  Binary.encode: node:v8 serializes it, the array left out", () => Binary.encode(encoded))
time("  the 1 MiB array copied into a fresh frame", () => Buffer.from(payload.bytes))
console.log("ours, in the worker")
time("  decodeBinary: node:v8 deserializes it, the array a view", () => decodeBinary(frame))
time("  the task's codec: the payload checked and decoded", () => codec.decodePayload(decoded))
console.log("piscina, V8's structured clone")
time("  structuredClone of the payload: caller and thread together", () => structuredClone(payload))
time("  structuredClone of the same object without the array", () => structuredClone({ doc: payload.doc }))
