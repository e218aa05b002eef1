/**
 * What happens in a pool, as it happens: the hooks metrics and logs hang on.
 * Every hook is optional, and a pool built without them calls none: the hot
 * path pays one `undefined` check per event.
 *
 * @internal
 */
import type * as Context from "effect/Context"
import type { Entry, Reply } from "../processes/entry.ts"
import type { WorkerExitReason } from "../processes/killReason.ts"
import type { LogMessage, MetricsMessage } from "../wire/protocol.ts"

/**
 * The hooks of a pool. Times are in the pool clock's milliseconds; an entry's
 * `submittedAt` and `startedAt` are set only when `settled` is hooked. A task
 * that waits in the queue has the time of the first submit in its turn of the
 * event loop: one clock read serves a burst of submits.
 *
 * @internal
 */
export interface PoolEvents {
  /** A task waits for a worker. */
  readonly queued?: ((entry: Entry) => void) | undefined
  /** A task was sent to worker `pid`. */
  readonly sent?: ((entry: Entry, pid: number) => void) | undefined
  /** A task started running in its worker, as far as the parent can tell. */
  readonly started?: ((entry: Entry) => void) | undefined
  /**
   * Items of a batch came back ahead of its answer (a `BatchPart`): their
   * values alone, or each item's `[ExitKind, value]` when `exits`.
   */
  readonly part?: ((entry: Entry, exits: boolean, items: ReadonlyArray<unknown>, now: number) => void) | undefined
  /**
   * A task ended with `reply`, before its caller resumes; a cancelled queued
   * task ends as interrupted. For a batch, the reply holds only the items
   * after its parts.
   */
  readonly settled?: ((entry: Entry, reply: Reply, now: number) => void) | undefined
  /** A task's success, counted by `settled`, did not decode at the caller: it ends as a SerializationError. */
  readonly undecoded?: ((entry: Entry) => void) | undefined
  /** A task, or `items` items of a map, never reached the pool: its payload did not encode. */
  readonly unsent?: ((task: string, items: number, caller: Context.Context<never> | undefined) => void) | undefined
  /** Worker `pid` is ready. */
  readonly workerStarted?: ((pid: number) => void) | undefined
  /** Worker `pid` ended. */
  readonly workerExited?: ((pid: number, reason: WorkerExitReason) => void) | undefined
  /** Worker `pid` logged a line, in task `entry` (undefined: outside any task the pool still holds). */
  readonly log?: ((pid: number, entry: Entry | undefined, message: LogMessage) => void) | undefined
  /** Worker `pid` sent its own metrics. Returns why the message breaks the protocol, if it does. */
  readonly metrics?: ((pid: number, message: MetricsMessage) => string | undefined) | undefined
}

/** No hooks: the default. @internal */
export const silent: PoolEvents = {}

/** Every hook of each of `events`, called in order. @internal */
export const combine = (...events: ReadonlyArray<PoolEvents>): PoolEvents => {
  const all = events.filter((e) => Object.values(e).some((hook) => hook !== undefined))
  if (all.length <= 1) return all[0] ?? silent
  const hooks: Record<string, (...args: Array<any>) => unknown> = {}
  for (const e of all) {
    for (const [name, hook] of Object.entries(e)) {
      if (hook === undefined) continue
      const before = hooks[name]
      hooks[name] = before === undefined ? hook : (...args) => {
        const a = before(...args)
        const b = (hook as (...args: Array<any>) => unknown)(...args)
        return a ?? b
      }
    }
  }
  return hooks as PoolEvents
}
