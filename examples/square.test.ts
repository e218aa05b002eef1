// examples/square.test.ts
//
// A unit test of code that uses the pool, with ProcessPool.layerTest: the
// handlers of examples/square.ts run in the test's own process, through the
// same encodings as on the wire, and no process is started.
//
//   npx vitest run examples/square.test.ts
import { expect, it } from "@effect/vitest"
import { ProcessPool } from "effect-process-pool"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import { Square } from "./square.ts"

/** The processes this one has started, from /proc (Linux). */
const children = (): Array<string> =>
  fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").split(" ").filter(Boolean)

// The code under test: anything that needs the ProcessPool service.
const sumOfSquares = (n: number) =>
  Effect.map(
    ProcessPool.map(Square, Array.from({ length: n }, (_, i) => i + 1)),
    (squares) => squares.reduce((a, b) => a + b, 0)
  )

it.effect("sums squares computed by the pool, without a process", () => {
  // Taken before the layer is built: a pool that started workers would show them below.
  const before = children()
  return Effect.gen(function*() {
    expect(yield* sumOfSquares(5)).toBe(55)
    expect(yield* ProcessPool.submit(Square, 12)).toBe(144)
    expect(children()).toStrictEqual(before)
  }).pipe(Effect.provide(ProcessPool.layerTest({ worker: new URL("./square.ts", import.meta.url) })))
})
