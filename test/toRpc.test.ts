import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as RpcSchema from "effect/rpc/RpcSchema"
import * as RpcTest from "effect/rpc/RpcTest"
import * as Schema from "effect/Schema"
import * as Task from "../src/Task.ts"
import { Count } from "./fixtures/streams.ts"
import { Negative, Square } from "./fixtures/tasks.ts"

describe("Task.toRpc", () => {
  it("keeps the tag and the Schemas: payload, success, failure as error", () => {
    const rpc = Task.toRpc(Square)
    expect(rpc._tag).toBe("Square")
    expect(rpc.payloadSchema).toBe(Square.payloadSchema)
    expect(rpc.successSchema).toBe(Square.successSchema)
    expect(rpc.errorSchema).toBe(Negative)
  })

  it("a streaming task becomes a streaming Rpc of its items and failure", () => {
    const rpc = Task.toRpc(Count)
    expect(rpc._tag).toBe("Count")
    expect(RpcSchema.isStreamSchema(rpc.successSchema)).toBe(true)
    const stream = rpc.successSchema as unknown as RpcSchema.Stream<Schema.Number, Schema.Never>
    expect(stream.success).toBe(Count.successSchema)
    expect(stream.error).toBe(Count.failureSchema)
  })

  it.effect("serves and calls the contract with effect/rpc: a typed failure arrives as its class", () =>
    Effect.gen(function*() {
      const group = RpcGroup.make(Task.toRpc(Square))
      const handlers = group.toLayer({
        Square: (n) => n < 0 ? Effect.fail(new Negative({ n })) : Effect.succeed(n * n)
      })
      const client = yield* RpcTest.makeClient(group).pipe(Effect.provide(handlers))
      expect(yield* client.Square(6)).toBe(36)
      const error = yield* Effect.flip(client.Square(-2))
      assert.instanceOf(error, Negative)
      expect(error.n).toBe(-2)
    }).pipe(Effect.scoped))
})
