/**
 * Retries of an idempotent task (one with `Task.retry`) whose worker
 * crashed, on the task's schedule: a call or a chunk again, a stream again
 * until one of its items has reached the caller. A typed failure is never
 * retried.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { WorkerCrashed } from "../../PoolError.ts"
import type * as Task from "../../Task.ts"
import type { Backend } from "./backend.ts"

/** The last crash of a task that crashed a worker on each of its `attempts` attempts, saying so. */
const crashedEveryAttempt = (last: WorkerCrashed, attempts: number): WorkerCrashed =>
  new WorkerCrashed({
    pid: last.pid,
    exitCode: last.exitCode,
    signal: last.signal,
    task: last.task,
    reason: `${last.reason ?? "crashed"}; every one of ${attempts} attempts crashed a worker`,
    ...(last.runner === undefined ? {} : { runner: last.runner })
  })

/**
 * Retries an idempotent task whose worker crashed, on the task's schedule. A
 * typed failure is never retried. When the retries are spent, the last
 * `WorkerCrashed` says how many attempts crashed.
 *
 * @internal
 */
export const withRetry = <A, E>(task: Task.Task.Any, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    let attempts = 0
    return effect.pipe(
      Effect.tapError((error) => Effect.sync(() => error instanceof WorkerCrashed && attempts++)),
      Effect.retry({ schedule: task.retry!, while: (error) => error instanceof WorkerCrashed }),
      Effect.mapError((error) =>
        error instanceof WorkerCrashed && attempts > 1 ? crashedEveryAttempt(error, attempts) as E : error
      )
    )
  })

/**
 * Retries a streaming task whose worker crashed before any item reached the
 * caller, on the task's schedule. Once an item has been delivered, a crash
 * ends the stream: running it again would deliver items twice.
 *
 * @internal
 */
export const withStreamRetry = <A, E>(
  task: Task.Task.Any,
  attempt: (delivered: () => void) => Stream.Stream<A, E>
): Stream.Stream<A, E> =>
  Stream.unwrap(Effect.map(Schedule.toStepWithSleep(task.retry!), (step) => {
    let delivered = false
    let attempts = 0
    const markDelivered = () => {
      delivered = true
    }
    const go = (): Stream.Stream<A, E> =>
      Stream.catchCause(attempt(markDelivered), (cause): Stream.Stream<A, E> => {
        const error = Cause.findErrorOption(cause)
        if (delivered || error._tag === "None" || !(error.value instanceof WorkerCrashed)) {
          return Stream.failCause(cause)
        }
        attempts++
        const crashed = error.value
        return Stream.unwrap(Effect.matchCause(step(crashed), {
          onFailure: () => Stream.fail((attempts > 1 ? crashedEveryAttempt(crashed, attempts) : crashed) as E),
          onSuccess: () => go()
        }))
      })
    return go()
  }))

/**
 * The backend with the calls, streams and chunks of idempotent tasks (those
 * with a `retry` schedule) retried when their worker, or their runner, was
 * lost: one policy for every backend, which itself makes one attempt.
 *
 * @internal
 */
export const withRetries = (backend: Backend): Backend => ({
  ...backend,
  call: (task, payload, options, convert) =>
    task.retry === undefined
      ? backend.call(task, payload, options, convert)
      : withRetry(task, backend.call(task, payload, options, convert)),
  open: (task, payload, options) =>
    task.retry === undefined
      ? backend.open(task, payload, options)
      : withStreamRetry(task, (delivered) =>
        // Once per batch of items the consumer receives, with no Effect per item.
        Stream.mapArray(backend.open(task, payload, options), (items) => {
          delivered()
          return items
        })),
  chunk: (task, payloads, timer, call) =>
    task.retry === undefined
      ? backend.chunk(task, payloads, timer, call)
      : withRetry(task, backend.chunk(task, payloads, timer, call))
})
