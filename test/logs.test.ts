/**
 * The workers' log lines, captured by a test Logger in the parent: the
 * caller's annotations and spans, the same level and message, and which
 * worker and task made them.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import type * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import type * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import * as ProcessPool from "../src/ProcessPool.ts"
import { Talk } from "./fixtures/observed.ts"
import { fixture } from "./helpers.ts"

interface Line {
  readonly level: LogLevel.LogLevel
  readonly message: unknown
  readonly annotations: Record<string, unknown>
  readonly spans: ReadonlyArray<string>
  /** The tracing span the line was logged in. */
  readonly span: string | undefined
  readonly date: Date
}

const spanName = (span: Tracer.AnySpan | undefined) => (span?._tag === "Span" ? span.name : undefined)

/** `body` in a scope of its own, under a logger that keeps every line it is given in `lines`. */
const captured = <A, E>(body: (lines: Array<Line>) => Effect.Effect<A, E, Scope.Scope>): Effect.Effect<A, E> => {
  const lines: Array<Line> = []
  const logger = Logger.make(({ date, fiber, logLevel, message }) => {
    lines.push({
      level: logLevel,
      message,
      annotations: { ...fiber.getRef(References.CurrentLogAnnotations) },
      spans: fiber.getRef(References.CurrentLogSpans).map(([label]) => label),
      span: spanName(Context.getOrUndefined(fiber.context, Tracer.ParentSpan)),
      date
    })
  })
  return body(lines).pipe(Effect.scoped, Effect.provideService(References.CurrentLoggers, new Set([logger])))
}

/** A pool over the observed fixture, whose log lines the pool's `log` hook counts as they arrive. */
const makePool = (received: Array<string>, isolation: "process" | "thread") =>
  ProcessPool.makeWith(
    { worker: fixture("observed.ts"), isolation, size: 1, inheritStderr: false },
    { events: { log: (_, __, message) => void received.push(message[2]) } }
  )

for (const isolation of ["process", "thread"] as const) {
  describe(`worker logs: ${isolation}`, () => {
    it.live("reach the caller's logger with its annotations and spans, and the worker's pid and task", () => {
      const received: Array<string> = []
      return captured((lines) =>
        Effect.gen(function*() {
          const pool = yield* makePool(received, isolation)
          const before = Date.now()
          const pid = yield* pool.submit(Talk, 7).pipe(
            Effect.annotateLogs("request", "r-1"),
            Effect.withLogSpan("calling"),
            Effect.withSpan("caller")
          )
          const talk = lines.filter((line) => line.annotations["process_pool.task"] === "Talk")
          // The default minimum level is Info: below it, nothing crossed the pipe.
          expect(talk.map((line) => line.level)).toEqual(["Info", "Warn", "Error"])
          expect(received.filter((level) => level === "Debug" || level === "Trace")).toEqual([])
          expect(talk.map((line) => line.message)).toEqual([["info", 7], ["warning", 7], ["error", 7]])
          for (const line of talk) {
            expect(line.annotations).toEqual({
              request: "r-1",
              inner: "yes",
              "process_pool.worker_pid": pid,
              "process_pool.task": "Talk"
            })
            expect(line.spans).toEqual(["calling", "talking"])
            expect(line.span).toBe("caller")
            expect(line.date.getTime()).toBeGreaterThanOrEqual(before)
          }
        })
      )
    })

    it.live("the items of a map log as their task, one line each", () => {
      return captured((lines) =>
        Effect.gen(function*() {
          const pool = yield* makePool([], isolation)
          yield* pool.map(Talk, [1, 2, 3, 4, 5, 6], { chunkSize: 3 }).pipe(Effect.annotateLogs("request", "r-2"))
          const errors = lines.filter((line) => line.level === "Error")
          expect(errors.map((line) => (line.message as Array<unknown>)[1])).toEqual([1, 2, 3, 4, 5, 6])
          for (const line of errors) {
            expect(line.annotations["process_pool.task"]).toBe("Talk")
            expect(line.annotations.request).toBe("r-2")
          }
        })
      )
    })

    it.live("a line made while the worker's services were built goes to the pool's own context", () => {
      return captured((lines) =>
        Effect.gen(function*() {
          const pool = yield* makePool([], isolation)
          const { workers } = yield* pool.stats
          const built = lines.filter((line) => (line.message as Array<unknown>)[0] === "services built")
          expect(built.length).toBe(1)
          expect(built[0].level).toBe("Info")
          expect(built[0].annotations).toEqual({ where: "pool", "process_pool.worker_pid": workers[0].pid })
        }).pipe(Effect.annotateLogs("where", "pool"))
      )
    })

    it.live("the caller's minimum level is applied in the worker: lines below it never cross the pipe", () => {
      const received: Array<string> = []
      return captured((lines) =>
        Effect.gen(function*() {
          const talk = () =>
            lines.filter((line) => line.annotations["process_pool.task"] === "Talk").map((l) => l.level)
          // Built at Warn: the Info line of the worker's services stays in the worker.
          const pool = yield* makePool(received, isolation).pipe(
            Effect.provideService(References.MinimumLogLevel, "Warn")
          )
          expect(received).toEqual([])
          yield* pool.submit(Talk, 1).pipe(Effect.provideService(References.MinimumLogLevel, "Warn"))
          expect(received).toEqual(["Warn", "Error"])
          expect(talk()).toEqual(["Warn", "Error"])
          received.length = lines.length = 0
          yield* pool.submit(Talk, 2).pipe(Effect.provideService(References.MinimumLogLevel, "Debug"))
          expect(received).toEqual(["Debug", "Info", "Warn", "Error"])
          expect(talk()).toEqual(["Debug", "Info", "Warn", "Error"])
          received.length = lines.length = 0
          yield* pool.map(Talk, [3, 4], { chunkSize: 2 }).pipe(
            Effect.provideService(References.MinimumLogLevel, "Error")
          )
          expect(received).toEqual(["Error", "Error"])
          expect(talk()).toEqual(["Error", "Error"])
        })
      )
    })
  })
}
