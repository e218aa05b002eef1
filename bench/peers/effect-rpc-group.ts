/**
 * The RPC group of the Effect RPC peer: the same four tasks as our pool's.
 */
import * as Rpc from "effect/rpc/Rpc"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as Schema from "effect/Schema"

const Item = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  value: Schema.Number,
  tags: Schema.Array(Schema.String)
})

export class Group extends RpcGroup.make(
  Rpc.make("Square", { payload: Schema.Number, success: Schema.Number }),
  Rpc.make("SquareAll", { payload: Schema.Array(Schema.Number), success: Schema.Array(Schema.Number) }),
  Rpc.make("Digest", { payload: { rounds: Schema.Number, seed: Schema.Number }, success: Schema.String }),
  Rpc.make("Checksum", {
    payload: {
      doc: Schema.Struct({ id: Schema.Number, items: Schema.Array(Item) }),
      bytes: Schema.Uint8Array
    },
    success: Schema.Number
  })
) {}
