// examples/socket.ts
//
// `NodeClusterSocket.layer({ storage: "sql", … })` from @effect/platform-node,
// built from its parts so that one setting can change: how soon a connection
// to a runner that stopped answering is given up.
//
// The engine pings each runner it has a connection to every 5 s, and gives
// the connection up after 5 s without a frame: between 5 and 10 s. Until
// then, the calls in flight to a runner that froze (SIGSTOP, a VM paused, a
// process stuck in the kernel) wait for it, even once its shards have passed
// to another runner, since its socket stays open. A killed runner's socket
// closes at once, so this setting bounds only the frozen case.
//
// `examples/cluster.ts` uses it for its client and runners; the README's
// "Beyond one machine" gives the figures, under "A runner that stands still".
import { layerSocketServer } from "@effect/platform-node/NodeClusterSocket"
import * as NodeCrypto from "@effect/platform-node/NodeCrypto"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as RunnerHealth from "effect/cluster/RunnerHealth"
import * as Runners from "effect/cluster/Runners"
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as SocketRunner from "effect/cluster/SocketRunner"
import * as SqlMessageStorage from "effect/cluster/SqlMessageStorage"
import * as SqlRunnerStorage from "effect/cluster/SqlRunnerStorage"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import { Socket } from "effect/socket/Socket"

/**
 * How a connection to a runner is opened, with a ping every `silence / 2`: a
 * runner that sends nothing for `silence` is given up (at the next ping), and
 * the calls in flight to it fail over as if it had died.
 */
const clientProtocol = (silence: Duration.Input) =>
  Layer.effect(Runners.RpcClientProtocol)(Effect.gen(function*() {
    const serialization = yield* RpcSerialization.RpcSerialization
    const timeout = Duration.toMillis(silence)
    return {
      codecFor: serialization.codecFor,
      make: Effect.fnUntraced(function*(address) {
        const socket = yield* NodeSocket.makeNet({
          openTimeout: 1_000,
          timeout: timeout + 500,
          host: address.host,
          port: address.port
        })
        return yield* RpcClient.makeProtocolSocket({ pingInterval: timeout / 2, pingTimeout: timeout }).pipe(
          Effect.provideService(Socket, socket),
          Effect.provideService(RpcSerialization.RpcSerialization, serialization)
        )
      }, Effect.orDie)
    }
  }))

/**
 * The cluster over sockets and PostgreSQL (or any `SqlClient`), as
 * `NodeClusterSocket.layer({ storage: "sql", clientOnly, shardingConfig })`
 * builds it, with `silence` (default 1.5 s) in place of the engine's 5 to
 * 10 s.
 */
export const layer = (options: {
  readonly clientOnly: boolean
  readonly shardingConfig: Partial<ShardingConfig.ShardingConfig["Service"]>
  readonly silence?: Duration.Input | undefined
}) => {
  const protocol = clientProtocol(options.silence ?? "1500 millis")
  const sharding = options.clientOnly
    ? SocketRunner.layerClientOnly.pipe(Layer.provide(protocol))
    : SocketRunner.layer.pipe(
      Layer.provide([layerSocketServer, protocol]),
      Layer.provide(RunnerHealth.layerPing.pipe(Layer.provide(Runners.layerRpc), Layer.provide(protocol)))
    )
  return sharding.pipe(
    Layer.provideMerge(SqlMessageStorage.layer.pipe(Layer.provide(NodeCrypto.layerDigest))),
    Layer.provide(Layer.orDie(SqlRunnerStorage.layer)),
    Layer.provide(ShardingConfig.layerFromEnv(options.shardingConfig)),
    Layer.provide(RpcSerialization.layerSchemaBinary())
  )
}
