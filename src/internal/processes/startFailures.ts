/**
 * Workers that fail to start: the error each failure makes, the back-off
 * before the next start, and when the pool gives up and breaks. Pure: the
 * supervisor keeps the counts and the timers, and asks here what they mean.
 *
 * @internal
 */
import { WorkerStartError } from "../../PoolError.ts"
import { frameless } from "../frameless.ts"
import type { WorkerConnection } from "./workerProcess.ts"

/** Where the fleet stands when a start has failed. @internal */
export interface StartFailures {
  /** Starts that failed in a row, this one included. */
  readonly failures: number
  /** The pool option: failures in a row after which, with no worker left, the pool breaks. */
  readonly maxStartFailures: number
  /** Whether a worker is ready. */
  readonly live: boolean
  /** Workers starting, or waiting to be started again. */
  readonly pending: number
}

/** What follows a failed start: another start after `delay` ms, or a broken pool. @internal */
export type AfterStartFailure =
  | { readonly _tag: "Retry"; readonly delay: number }
  | { readonly _tag: "Break" }

/** The longest wait between two starts, in ms. */
const maxDelay = 5_000

/**
 * What follows a failed start. The next start waits 100 ms after the first
 * failure, twice as long after each one in a row after it, and at most
 * `maxDelay`. Once `maxStartFailures` starts in a row have failed, with no
 * worker ready and none starting, the pool breaks: no worker will come.
 *
 * @internal
 */
export const afterStartFailure = (state: StartFailures): AfterStartFailure =>
  state.failures >= state.maxStartFailures && !state.live && state.pending === 0
    ? { _tag: "Break" }
    : { _tag: "Retry", delay: Math.min(100 * 2 ** (state.failures - 1), maxDelay) }

/**
 * Why `worker` could not start, as its caller sees it: the worker's own words
 * first when it gave them, then how it ended, and its stderr.
 *
 * @internal
 */
export const startError = (worker: WorkerConnection, moduleUrl: string): WorkerStartError => {
  const how = worker.killReason?.message ?? (worker.signal !== null
    ? `it was killed by ${worker.signal}`
    : `it exited with code ${worker.exitCode}`)
  // The worker's own words come first when it gave them: the user's error, not the pool's internals.
  // No stack: its frames would be this callback's, never the caller's.
  return frameless(() =>
    new WorkerStartError({
      message: worker.startFailure !== undefined
        ? `${worker.startFailure}\n(Worker process ${worker.pid} of ${moduleUrl} could not start: ${how}. ` +
          `Its stderr is in this error's \`stderr\`.)`
        : `Worker process ${worker.pid} failed to start: ${how}. ` +
          `Its stderr is attached; the worker module (${moduleUrl}) must import cleanly ` +
          `and export Worker.handlers(...) as default.`,
      stderr: worker.stderr
    })
  )
}

/** The error of a pool broken after `failures` failed starts in a row, the last of which was `last`. @internal */
export const brokenError = (failures: number, last: WorkerStartError): WorkerStartError =>
  frameless(() =>
    new WorkerStartError({
      message: `The pool is broken: workers failed to start ${failures} times in a row. ` + last.message,
      stderr: last.stderr
    })
  )
