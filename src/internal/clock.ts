/**
 * Timers for durations of any length. Node's own timers take at most 2³¹-1
 * ms: a longer delay, `Infinity` among them, fires after 1 ms. Here an
 * infinite delay never fires, and a finite one past Node's limit fires when
 * it is due, in steps.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/** The longest delay one Node timer takes. @internal */
export const maxTimerDelay = 2 ** 31 - 1

/** Stops a timer: it will not fire. Calling it twice, or after the timer fired, does nothing. @internal */
export type Cancel = () => void

const never: Cancel = () => {}

/** Whether a delay in milliseconds means "never": infinite, or not a number. @internal */
export const isNever = (ms: number): boolean => !(ms < Infinity)

/**
 * Calls `f` once, after `ms` milliseconds. An infinite `ms` never calls it.
 * An unref'd timer does not keep the process alive.
 *
 * @internal
 */
export const after = (ms: number, f: () => void, unref = false): Cancel => {
  if (isNever(ms)) return never
  if (ms <= maxTimerDelay) {
    const timer = setTimeout(f, Math.max(0, ms))
    if (unref) timer.unref()
    return () => clearTimeout(timer)
  }
  let cancel: Cancel = never
  let cancelled = false
  const step = (left: number) => {
    cancel = after(Math.min(left, maxTimerDelay), () => {
      if (cancelled) return
      if (left > maxTimerDelay) step(left - maxTimerDelay)
      else f()
    }, unref)
  }
  step(ms)
  return () => {
    cancelled = true
    cancel()
  }
}

/**
 * Calls `f` every `ms` milliseconds, unref'd. An interval past Node's limit
 * means "never": nothing is scheduled.
 *
 * @internal
 */
export const every = (ms: number, f: () => void): Cancel => {
  if (isNever(ms) || ms > maxTimerDelay) return never
  const timer = setInterval(f, Math.max(1, ms))
  timer.unref()
  return () => clearInterval(timer)
}

/**
 * The time and timers a pool runs on. Scheduling rules (timeouts, grace
 * periods, back-off, heartbeats, idle shrink, drain) read only this, so a
 * test can run them on Effect's `TestClock`.
 *
 * @internal
 */
export interface PoolClock {
  /** Milliseconds, for measuring intervals. */
  now(): number
  after(ms: number, f: () => void, unref?: boolean): Cancel
  every(ms: number, f: () => void): Cancel
}

/** Node's own timers and `performance.now()`. @internal */
export const liveClock: PoolClock = { now: () => performance.now(), after, every }

/** The clock Effect runs on when nothing else is provided. */
const defaultClock: Clock.Clock = Effect.runSync(Effect.clockWith(Effect.succeed))

/**
 * The pool's clock for an Effect `Clock`: Node's own timers for Effect's
 * default clock, else timers that sleep on the given clock, such as a
 * `TestClock`, whose `adjust` then moves the pool's time too.
 *
 * @internal
 */
export const poolClockOf = (clock: Clock.Clock): PoolClock => {
  if (clock.constructor === defaultClock.constructor) return liveClock
  const sleepThen = (ms: number, f: () => void) => Effect.andThen(clock.sleep(Duration.millis(ms)), Effect.sync(f))
  return {
    now: () => clock.currentTimeMillisUnsafe(),
    after: (ms, f) => {
      if (isNever(ms)) return never
      const fiber = Effect.runFork(sleepThen(ms, f))
      return () => fiber.interruptUnsafe()
    },
    every: (ms, f) => {
      if (isNever(ms) || ms > maxTimerDelay) return never
      const fiber = Effect.runFork(Effect.forever(sleepThen(Math.max(1, ms), f)))
      return () => fiber.interruptUnsafe()
    }
  }
}

/**
 * Runs `f` once what is waiting in the pipes has been read: Node's poll phase
 * comes before `setImmediate`. A timer that judges a worker fires late when
 * the parent was blocked, and must not miss the answer that came meanwhile.
 *
 * @internal
 */
export const afterReading = (f: () => void): void => {
  setImmediate(f)
}
