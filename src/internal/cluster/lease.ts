/**
 * A runner's hold on the work it took. The engine refreshes a runner's shard
 * locks every `shardLockRefreshInterval`, and they expire
 * `shardLockExpiration` after the last refresh. A runner whose process stood
 * still longer than the difference (stopped, frozen, starved of CPU) may have
 * lost its shards to another runner, which then receives the same messages
 * again and tells their callers that the work was lost. So a task the runner
 * took before such a stall does not start after it: it ends with
 * `WorkerCrashed`, which says it did not run there.
 *
 * The engine does not tell a runner how long its locks last, so the limit is
 * the runner's option `maxStall`. A heartbeat notes when the process last ran; the check is made again at the
 * moment a task would start, before any timer of the engine can run after a
 * stall. Tasks a worker already held keep running: a worker is a process of
 * its own, which a stall of its runner does not stop.
 *
 * @internal
 */
import * as ShardingConfig from "effect/cluster/ShardingConfig"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { WorkerCrashed } from "../../PoolError.ts"
import type { Admit } from "../service/backend.ts"

/** How long a runner may stand still when neither its options nor its context say. */
const defaultMaxStall = 2_000

/**
 * Starts the heartbeat of a runner, stopped with the scope. `maxStall` is
 * the runner's option of that name.
 *
 * @internal
 */
export const makeLease = Effect.fnUntraced(function*(maxStall: Duration.Input | undefined) {
  const config = yield* Effect.serviceOption(ShardingConfig.ShardingConfig)
  // How long the runner may stand still and still hold every lock it held before.
  // Never below the heartbeat's own period and the event loop's ordinary lag.
  const safe = maxStall !== undefined
    ? Math.max(100, Duration.toMillis(maxStall))
    : Option.match(config, {
      onNone: () => defaultMaxStall,
      onSome: (config) =>
        Math.max(
          100,
          Duration.toMillis(config.shardLockExpiration) - Duration.toMillis(config.shardLockRefreshInterval)
        )
    })
  let beat = performance.now()
  // Counts the stalls longer than `safe`: work taken in an earlier epoch does not start.
  let epoch = 0
  let stalled = 0
  const check = (): void => {
    const now = performance.now()
    if (now - beat > safe) {
      epoch++
      stalled = now - beat
    }
    beat = now
  }
  const timer = setInterval(check, Math.min(1_000, Math.max(20, safe / 4)))
  timer.unref()
  yield* Effect.addFinalizer(() => Effect.sync(() => clearInterval(timer)))

  return {
    /** A hold on the task `task` taken now by the runner at `self`: it may start while no stall has come between. */
    take: (task: string, self: string): Admit => {
      const taken = epoch
      return () => {
        check()
        return epoch === taken ? undefined : new WorkerCrashed({
          pid: process.pid,
          exitCode: null,
          signal: null,
          task,
          runner: self,
          reason: `runner ${self} stood still for ${(stalled / 1000).toFixed(1)} s, longer than its shard locks ` +
            `are sure to last (${safe} ms), after it took the task and before the task started: it did not run ` +
            `there`
        })
      }
    }
  }
})
