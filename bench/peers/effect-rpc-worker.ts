/**
 * The child process of the Effect RPC peer: an RpcServer on the worker-runner
 * protocol, over `process.send` (NodeWorkerRunner in a forked child).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeWorkerRunner from "@effect/platform-node/NodeWorkerRunner"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RpcServer from "effect/rpc/RpcServer"
import { checksum, digest, square, squareAll } from "../work.ts"
import { Group } from "./effect-rpc-group.ts"

const Handlers = Group.toLayer({
  Square: (n) => Effect.succeed(square(n)),
  SquareAll: (xs) => Effect.succeed(squareAll(xs)),
  Digest: ({ rounds, seed }) => Effect.sync(() => digest(rounds, seed)),
  Checksum: ({ bytes, doc }) => Effect.sync(() => checksum(doc, bytes))
})

const Main = RpcServer.layer(Group).pipe(
  Layer.provide(Handlers),
  Layer.provide(RpcServer.layerProtocolWorkerRunner),
  Layer.provide(NodeWorkerRunner.layer)
)

NodeRuntime.runMain(Layer.launch(Main))
