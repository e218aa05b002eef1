/**
 * The worker module of effect-process-pool in the benchmark.
 */
import * as Worker from "effect-process-pool/Worker"
import * as Effect from "effect/Effect"
import { Checksum, Digest, Square } from "./tasks.ts"
import { checksum, digest } from "./work.ts"

export default Worker.handlers(
  Square.handler((n) => Effect.succeed(n * n)),
  Digest.handler(({ rounds, seed }) => Effect.sync(() => digest(rounds, seed))),
  Checksum.handler(({ bytes, doc }) => Effect.sync(() => checksum(doc, bytes)))
)
