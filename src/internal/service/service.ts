/**
 * The `ProcessPool` service, built once over any backend: the checks of a
 * call's options, `submit` for unary and streaming tasks, the retries of
 * idempotent tasks (retry.ts), the map engines (mapping.ts), `stats` and
 * `statsStream`. A backend gives only the primitives in backend.ts, each
 * making one attempt.
 *
 * @internal
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type { Service, Stats, SubmitArgs, Submitted } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"
import { checkSubmit } from "../options.ts"
import type { Backend } from "./backend.ts"
import { makeMapping } from "./mapping.ts"
import { withRetries } from "./retry.ts"

/**
 * The service over a backend whose primitives make one attempt each.
 *
 * @internal
 */
export const makeService = (once: Backend): Service => {
  const backend = withRetries(once)
  const submit: Service["submit"] = <T extends Task.Task.Any>(task: T, ...[payload, options]: SubmitArgs<T>) => {
    const invalid = options === undefined ? undefined : checkSubmit(options)
    if (task.stream) {
      return (invalid === undefined
        ? backend.open(task, payload as Task.Task.Payload<T>, options)
        : Stream.fail(invalid)) as Submitted<T>
    }
    return (invalid === undefined
      ? backend.call(task, payload as Task.Task.Payload<T>, options)
      : Effect.fail(invalid)) as Submitted<T>
  }
  return { submit, ...makeMapping(backend), stats: backend.stats, statsStream: statsEvery(backend.stats) }
}

/**
 * `statsStream` over a backend's `stats`: one snapshot at once, then one
 * every `interval`, up to the one that finds the pool closed.
 */
const statsEvery = (stats: Effect.Effect<Stats>) => (interval: Duration.Input): Stream.Stream<Stats> =>
  Stream.tick(interval).pipe(
    Stream.mapEffect(() => stats),
    Stream.takeUntil((snapshot) => snapshot.state === "closed")
  )
