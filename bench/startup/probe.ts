/**
 * The worker module of bench/startup/parts.ts: says when it was evaluated,
 * in ms since its process started. Everything a worker loads before the
 * module (Node, the bundle of `effect`, the pool's worker runtime) is in that
 * figure; the module's own imports are the bench's tasks only.
 */
import * as Worker from "effect-process-pool/Worker"
import * as Effect from "effect/Effect"
import { Square, Started } from "../tasks.ts"

const evaluatedAt = performance.now()

export default Worker.handlers(
  Square.handler((n) => Effect.succeed(n * n)),
  Started.handler(() => Effect.succeed(evaluatedAt))
)
