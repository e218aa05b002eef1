/**
 * Case 5: program start to first result with Effect RPC over 2 forked workers.
 */
import * as NodeWorker from "@effect/platform-node/NodeWorker"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import { fork } from "node:child_process"
import { Group } from "../peers/effect-rpc-group.ts"

const script = new URL("../peers/effect-rpc-worker.ts", import.meta.url).pathname

const program = Effect.scoped(Effect.gen(function*() {
  const client = yield* RpcClient.make(Group)
  const result = yield* client.Square(7)
  process.stdout.write(`FIRST ${result}\n`)
})).pipe(
  Effect.provide(
    RpcClient.layerProtocolWorker({ size: 2 }).pipe(
      Layer.provide(NodeWorker.layer(() => fork(script, [], { execArgv: [] })))
    )
  )
)

Effect.runPromise(program).then(() => process.exit(0))
