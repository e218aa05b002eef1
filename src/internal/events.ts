/**
 * What happens in a pool, as it happens: the hooks metrics and logs hang on.
 * Every hook is optional, and a pool built without them calls none: the hot
 * path pays one `undefined` check per event.
 *
 * @internal
 */
import type { Reply } from "./dispatcher.ts"

/** Why a worker process ended. @internal */
export type WorkerExitReason =
  /** It died by itself: killed from outside, exited, or crashed. */
  | "crashed"
  /** Killed because a task did not stop within `interruptGrace` of being interrupted. */
  | "runaway"
  /** Killed because its event loop stopped answering pings while it was idle. */
  | "hung"
  /** Killed because it broke the protocol. */
  | "protocol"
  /** Replaced after `maxTasksPerWorker` tasks or past `maxWorkerMemory`. */
  | "recycled"
  /** Stopped after `idleTimeout` without work, above `minSize`. */
  | "idle"
  /** Stopped because the pool closed. */
  | "shutdown"
  /** It never became ready. */
  | "start_failed"

/** @internal */
export interface PoolEvents {
  /** A task waits for a worker. */
  readonly queued?: ((task: string) => void) | undefined
  /** A task was sent to worker `pid`. */
  readonly sent?: ((task: string, pid: number) => void) | undefined
  /** A task started running in its worker, as far as the parent can tell. */
  readonly started?: ((task: string) => void) | undefined
  /** A task ended with `reply`, before its caller resumes; a cancelled queued task ends as interrupted. */
  readonly settled?: ((task: string, reply: Reply) => void) | undefined
  /** Worker `pid` is ready. */
  readonly workerStarted?: ((pid: number) => void) | undefined
  /** Worker `pid` ended. */
  readonly workerExited?: ((pid: number, reason: WorkerExitReason) => void) | undefined
}

/** No hooks: the default. @internal */
export const silent: PoolEvents = {}
