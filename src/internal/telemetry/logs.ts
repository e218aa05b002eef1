/**
 * The workers' log lines, delivered to the parent's loggers: those of the
 * caller whose task made the line, with the caller's annotations and log
 * spans, or the pool's own context for a line made outside any task.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"
import * as References from "effect/References"
import { decodeDefect } from "../wire/codec.ts"
import { type LogMessage, workerPidKey } from "../wire/protocol.ts"
import type { PoolEvents } from "./events.ts"

/** The annotation with the task a log line was made in. @internal */
export const taskAnnotation = "process_pool.task"

/**
 * Delivers each worker's log lines to the loggers of the caller's context,
 * or of `poolContext`.
 *
 * @internal
 */
export const makeLogDelivery = (poolContext: Context.Context<never>): PoolEvents => ({
  log: (pid, entry, message) => {
    const context = entry?.caller ?? poolContext
    const level = message[2]
    if (LogLevel.isGreaterThan(Context.get(context, References.MinimumLogLevel), level)) return
    const [, , , parts, time, annotations, spans, cause] = message
    const merged: Record<string, unknown> = { ...Context.get(context, References.CurrentLogAnnotations) }
    if (annotations !== 0) Object.assign(merged, annotations)
    merged[workerPidKey] = pid
    if (entry !== undefined) merged[taskAnnotation] = entry.tag
    let logContext = Context.add(context, References.CurrentLogAnnotations, merged)
    if (spans !== 0) {
      logContext = Context.add(logContext, References.CurrentLogSpans, [
        ...Context.get(context, References.CurrentLogSpans),
        ...spans.map(([label, start]) => [label, start] as [string, number])
      ])
    }
    deliver(logContext, message, parts, new Date(time), cause === 0 ? Cause.empty : Cause.die(decodeDefect(cause)))
  }
})

const deliver = (
  context: Context.Context<never>,
  message: LogMessage,
  parts: Array<unknown>,
  date: Date,
  cause: Cause.Cause<unknown>
): void => {
  try {
    Effect.runSyncWith(context)(Effect.withFiber((fiber) => {
      for (const logger of fiber.getRef(References.CurrentLoggers)) {
        logger.log({ message: parts, logLevel: message[2], cause, fiber, date })
      }
      return Effect.void
    }))
  } catch {
    // A logger that throws loses its line, and nothing else.
  }
}
