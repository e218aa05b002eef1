// examples/square.ts
import { NodeRuntime } from "@effect/platform-node"
import { ProcessPool, Task, Worker } from "effect-process-pool"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

// The contract: shared by the parent and every worker.
export const Square = Task.make("Square", { payload: Schema.Number, success: Schema.Number })

// The handlers this module serves when a worker loads it.
export default Worker.handlers(Square.handler((n) => Effect.succeed(n * n)))

const main = Effect.gen(function*() {
  const results = yield* ProcessPool.map(Square, [1, 2, 3, 4, 5])
  yield* Effect.log(results) // [1, 4, 9, 16, 25]
})

if (import.meta.main) {
  main.pipe(Effect.provide(ProcessPool.layer({ worker: import.meta.url })), NodeRuntime.runMain)
}
