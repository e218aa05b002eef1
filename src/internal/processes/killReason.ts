/**
 * Why the pool kills a worker: what its exit counts as, and the words that
 * explain it to the tasks it held (`WorkerCrashed.reason`) or, when it never
 * became ready, in the start error. Made where the pool kills a worker, and
 * read by kind where its exit is classified (supervisor.ts).
 *
 * @internal
 */

/** Why a worker process ended. @internal */
export type WorkerExitReason =
  /** It died by itself: killed from outside, exited, or crashed. */
  | "crashed"
  /** Killed because a task did not stop within `interruptGrace` of being interrupted. */
  | "runaway"
  /** Killed because its event loop stopped answering pings while it was idle. */
  | "hung"
  /** Killed, or died, because a task passed a limit of the pool's (`maxCpuTime`, `maxWorkerHeap`). */
  | "limit"
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

/** Why the pool killed a worker. @internal */
export interface KillReason {
  /** What the worker's exit counts as. */
  readonly kind: Extract<WorkerExitReason, "start_failed" | "protocol" | "hung" | "runaway" | "limit" | "shutdown">
  /** What its tasks' `WorkerCrashed.reason`, or its start error, says. */
  readonly message: string
}

/** The reasons the pool kills a worker for. @internal */
export const KillReason = {
  /** It did not send Ready within `startTimeout`. */
  startTimeout: (startTimeout: number): KillReason => ({
    kind: "start_failed",
    message: `it did not become ready within ${startTimeout} ms`
  }),
  /** It broke the protocol: `detail` says how. */
  protocol: (detail: string): KillReason => ({ kind: "protocol", message: `protocol error: ${detail}` }),
  /** It left a ping it got while idle unanswered for over `hangTimeout`. */
  hung: (hangTimeout: number): KillReason => ({
    kind: "hung",
    message: `it stopped answering: its event loop was blocked for over ${hangTimeout} ms while it was idle`
  }),
  /** Task `tag` did not stop within `interruptGrace` of being interrupted. */
  runaway: (tag: string, interruptGrace: number): KillReason => ({
    kind: "runaway",
    message: `task "${tag}" did not stop within ${interruptGrace} ms of being interrupted`
  }),
  /** Task `tag` used more than `maxCpuTime` of CPU time. */
  cpuTime: (tag: string, maxCpuTime: number): KillReason => ({
    kind: "limit",
    message: `task "${tag}" used more CPU time than maxCpuTime (${maxCpuTime} ms)`
  }),
  /** The pool closed, in `interrupt` mode or past its drain, while the worker still held tasks. */
  closedBusy: { kind: "shutdown", message: "the pool closed before its tasks finished" } satisfies KillReason,
  /** The pool was closing and the worker did not exit within `shutdownTimeout`. */
  closeTimedOut: {
    kind: "shutdown",
    message: "the pool was closing and the worker did not exit in time"
  } satisfies KillReason
} as const
