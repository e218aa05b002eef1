/**
 * `ProcessPool.layerQuietRepeats`: a line logged every 100 ms for 20 s is
 * said once, then at a falling rate, with how often it was said meanwhile;
 * other lines pass as they are. The test clock stands in for time.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as TestClock from "effect/testing/TestClock"
import * as ProcessPool from "../src/ProcessPool.ts"

describe("layerQuietRepeats", () => {
  it.effect("a repeated line is said once, then after 1, 2, 4, 8 s, with the count held back", () =>
    Effect.gen(function*() {
      const lines: Array<{ readonly at: number; readonly message: ReadonlyArray<unknown> }> = []
      const recorder = Logger.make((options) =>
        void lines.push({ at: options.date.getTime(), message: options.message as ReadonlyArray<unknown> })
      )
      const program = Effect.gen(function*() {
        const t0 = yield* Effect.clockWith((clock) => Effect.succeed(clock.currentTimeMillisUnsafe()))
        for (let i = 0; i < 200; i++) {
          yield* Effect.logWarning("storage is still unhealthy")
          if (i === 50) yield* Effect.log("something else")
          yield* TestClock.adjust("100 millis")
        }
        return t0
      })
      const t0 = yield* program.pipe(
        Effect.provide(ProcessPool.layerQuietRepeats.pipe(Layer.provide(Logger.layer([recorder]))))
      )
      const repeated = lines.filter((line) => line.message[0] === "storage is still unhealthy")
      // Said at 0 s, then at 1, 3, 7 and 15 s: the gaps double.
      expect(repeated.map((line) => Math.round((line.at - t0) / 100) / 10)).toEqual([0, 1, 3, 7, 15])
      expect(repeated[1].message[1]).toMatch(/said 9 more times since/)
      expect(repeated[2].message[1]).toMatch(/said 19 more times since/)
      // Another line is not held back.
      expect(lines.filter((line) => line.message[0] === "something else")).toHaveLength(1)
    }))
})
