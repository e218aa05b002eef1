/**
 * The benchmark's task contracts for effect-process-pool, shared by the
 * parent (bench/pools/ours.ts, bench/startup/ours.ts) and bench/worker.ts.
 */
import * as Task from "effect-process-pool/Task"
import * as Schema from "effect/Schema"

/** Cases 1, 2, 3 and 5: n * n. */
export const Square = Task.make("Square", { payload: Schema.Number, success: Schema.Number })

/** Case 4: iterated SHA-256 for about 10 ms. */
export const Digest = Task.make("Digest", {
  payload: Schema.Struct({ rounds: Schema.Number, seed: Schema.Number }),
  success: Schema.String
})

const Item = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  value: Schema.Number,
  tags: Schema.Array(Schema.String)
})

/**
 * Case 7: a ~100 KB object and a 1 MiB Uint8Array in, a checksum out. Declared
 * binary, as a task that carries bytes should be: the bytes travel raw.
 */
export const Checksum = Task.make("Checksum", {
  payload: Schema.Struct({
    doc: Schema.Struct({ id: Schema.Number, items: Schema.Array(Item) }),
    bytes: Schema.Uint8Array
  }),
  success: Schema.Number,
  serialization: "binary"
})

/** bench/startup/parts.ts: when the worker's module was evaluated, in ms since its process started. */
export const Started = Task.make("Started", { success: Schema.Number })
