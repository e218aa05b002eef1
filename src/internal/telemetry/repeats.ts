/**
 * A log line said over and over (a runner that cannot reach its storage says
 * so every second) is said once, then at a falling rate: after 1 s, 2 s,
 * 4 s, … up to once a minute, each time with how many times it was said
 * since. A line not said for 5 minutes starts over.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"

/** The first gap, the longest, and the quiet after which a line counts as new. */
const firstGap = 1_000
const longestGap = 60_000
const forgetAfter = 5 * 60_000
/** Lines followed at most at once: past it, the oldest are forgotten. */
const tracked = 1_000

interface Repeat {
  /** When it may be said next. */
  next: number
  gap: number
  /** Times it was said and not logged since it last was. */
  held: number
  last: number
}

/** `logger`, which passes a line said again within its gap only once the gap has passed. @internal */
export const quietRepeats = <Output>(logger: Logger.Logger<unknown, Output>): Logger.Logger<unknown, void> => {
  const repeats = new Map<string, Repeat>()
  return Logger.make((options) => {
    const now = options.date.getTime()
    const key = `${options.logLevel}\u0000${keyOf(options.message)}`
    const repeat = repeats.get(key)
    if (repeat === undefined || now - repeat.last > forgetAfter) {
      if (repeats.size >= tracked) repeats.delete(repeats.keys().next().value!)
      repeats.delete(key)
      repeats.set(key, { next: now + firstGap, gap: firstGap, held: 0, last: now })
      logger.log(options)
      return
    }
    repeat.last = now
    if (now < repeat.next) {
      repeat.held++
      return
    }
    const held = repeat.held
    repeat.gap = Math.min(longestGap, repeat.gap * 2)
    repeat.next = now + repeat.gap
    repeat.held = 0
    const said = `(said ${held} more time${held === 1 ? "" : "s"} since it was last logged; next at most in ` +
      `${repeat.gap / 1000} s)`
    logger.log({
      ...options,
      message: [...(Array.isArray(options.message) ? options.message : [options.message]), said]
    })
  })
}

/**
 * The text that tells one line from another: its message, an error by its
 * name and message, without the cause (which may hold times or ids).
 */
const keyOf = (message: unknown): string => {
  const parts = Array.isArray(message) ? message : [message]
  return parts.map((part) =>
    typeof part === "string"
      ? part
      : part instanceof Error
      ? `${part.name}: ${part.message}`
      : safeJson(part)
  ).join(" ")
}

const safeJson = (value: unknown): string => {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/** The loggers in context, each quieted but the tracer's: see the module's comment. @internal */
export const layerQuietRepeats: Layer.Layer<never> = Layer.effect(
  Logger.CurrentLoggers,
  Effect.gen(function*() {
    const loggers = yield* Logger.CurrentLoggers
    // A span's events belong to its trace: a line repeated across traces is each trace's own.
    return new Set(Array.from(loggers, (logger) => logger === Logger.tracerLogger ? logger : quietRepeats(logger)))
  })
)
