/**
 * The cluster's storage as a caller sees it. While the storage (PostgreSQL)
 * does not answer, runners cannot prove they hold their shards and messages
 * cannot move, so a call would wait for as long as the outage lasts. A probe
 * asks the storage every half second; once it has failed for longer than
 * `storageTimeout`, the calls that wait fail with `StorageUnreachable`, and
 * new calls fail with it at once, until the storage answers again.
 *
 * @internal
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as SqlClient from "effect/sql/SqlClient"
import { StorageUnreachable } from "../../PoolError.ts"

/** How long the storage has not answered, and what it said last. */
interface Outage {
  readonly since: number
  readonly reason: string
}

/** What the storage client's error says, in one line: its own message, and its causes'. @internal */
export const describe = (error: unknown): string => {
  const messages: Array<string> = []
  let current: unknown = error
  for (let depth = 0; current !== undefined && current !== null && depth < 8; depth++) {
    const message = (current as { readonly message?: unknown }).message
    if (typeof message === "string" && message !== "" && !messages.includes(message)) messages.push(message)
    current = (current as { readonly cause?: unknown }).cause
  }
  return messages.length === 0 ? String(error) : messages.join(": ")
}

/**
 * Watches the storage in the layer's scope, when the caller's context has an
 * `SqlClient`: without one, calls are left to the engine.
 *
 * @internal
 */
export const makeStorageWatch = Effect.fnUntraced(function*(timeout: number) {
  const sql = yield* Effect.serviceOption(SqlClient.SqlClient)
  if (Option.isNone(sql)) return undefined
  let outage: Outage | undefined
  // Completed once an outage has lasted `timeout`; a new one is made when the storage answers again.
  let tripped = Deferred.makeUnsafe<Outage>()
  const probe = sql.value`SELECT 1`.pipe(
    Effect.timeout(1_000),
    Effect.matchEffect({
      onFailure: (error) =>
        Effect.sync(() => {
          const now = performance.now()
          outage = { since: outage?.since ?? now, reason: describe(error) }
          if (now - outage.since >= timeout) Deferred.doneUnsafe(tripped, Effect.succeed(outage))
        }),
      onSuccess: () =>
        Effect.sync(() => {
          if (outage === undefined) return
          outage = undefined
          if (Deferred.isDoneUnsafe(tripped)) tripped = Deferred.makeUnsafe<Outage>()
        })
    })
  )
  yield* Effect.forkScoped(Effect.repeat(probe, Schedule.spaced(500)))

  const unreachable = (task: string, outage: Outage) =>
    new StorageUnreachable({
      task,
      unreachableFor: Math.round(performance.now() - outage.since),
      reason: outage.reason
    })

  /** Fails once the storage has been out for longer than `timeout`: at once, if it already has. */
  const whenOut = (task: string): Effect.Effect<never, StorageUnreachable> =>
    Effect.suspend(() =>
      Deferred.isDoneUnsafe(tripped) && outage !== undefined
        ? Effect.fail(unreachable(task, outage))
        : Effect.flatMap(Deferred.await(tripped), (outage) => Effect.fail(unreachable(task, outage)))
    )

  return {
    whenOut,
    /** The error of an outage under way, however short so far. */
    current: (task: string): StorageUnreachable | undefined =>
      outage === undefined ? undefined : unreachable(task, outage),
    /** `effect`, failed with `StorageUnreachable` should the storage be out, or go out, for longer than `timeout`. */
    bound: <A, E>(task: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E | StorageUnreachable> =>
      Effect.suspend(() =>
        Deferred.isDoneUnsafe(tripped) && outage !== undefined
          ? Effect.fail(unreachable(task, outage))
          : Effect.raceFirst(effect, whenOut(task))
      )
  }
})
