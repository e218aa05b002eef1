/**
 * What a failed start means, without processes: the wait before the next
 * start doubles up to a ceiling; the pool breaks only once `maxStartFailures`
 * starts in a row have failed with no worker ready and none starting; a
 * start error says how the worker ended, in the words a kill gave.
 */
import { describe, expect, it } from "@effect/vitest"
import { KillReason } from "../src/internal/processes/killReason.ts"
import { afterStartFailure, brokenError, startError } from "../src/internal/processes/startFailures.ts"
import type { WorkerConnection } from "../src/internal/processes/workerProcess.ts"

const alone = { maxStartFailures: 3, live: false, pending: 0 }

/** A worker that ended before it was ready. */
const failed = (ended: Partial<WorkerConnection>): WorkerConnection => ({
  pid: 42,
  state: "dead",
  stderr: "the stderr",
  exitCode: 1,
  signal: null,
  killReason: undefined,
  startFailure: undefined,
  partialSince: 0,
  sharedBytes: 0,
  send: () => {},
  sendMessage: () => {},
  shutdown: () => {},
  kill: () => {},
  ...ended
})

describe("after a failed start", () => {
  it("the next start waits 100 ms, doubling with each failure in a row, at most 5 s", () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 8, 20].map((failures) =>
      afterStartFailure({ ...alone, maxStartFailures: Infinity, failures })
    )
    expect(delays).toStrictEqual(
      [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000].map((delay) => ({ _tag: "Retry", delay }))
    )
  })

  it("the pool breaks at maxStartFailures in a row, with no worker ready and none starting", () => {
    expect(afterStartFailure({ ...alone, failures: 2 })).toStrictEqual({ _tag: "Retry", delay: 200 })
    expect(afterStartFailure({ ...alone, failures: 3 })).toStrictEqual({ _tag: "Break" })
    expect(afterStartFailure({ ...alone, failures: 4 })).toStrictEqual({ _tag: "Break" })
  })

  it("a ready worker, or one starting, keeps the pool going past maxStartFailures", () => {
    expect(afterStartFailure({ ...alone, failures: 3, live: true })).toStrictEqual({ _tag: "Retry", delay: 400 })
    expect(afterStartFailure({ ...alone, failures: 3, pending: 1 })).toStrictEqual({ _tag: "Retry", delay: 400 })
  })
})

describe("a start error", () => {
  it("says how the worker ended: its exit code, its signal, or why the pool killed it", () => {
    expect(startError(failed({}), "file:///w.ts").message).toBe(
      "Worker process 42 failed to start: it exited with code 1. Its stderr is attached; the worker module " +
        "(file:///w.ts) must import cleanly and export Worker.handlers(...) as default."
    )
    expect(startError(failed({ exitCode: null, signal: "SIGKILL" }), "file:///w.ts").message).toContain(
      "failed to start: it was killed by SIGKILL."
    )
    const timedOut = failed({ exitCode: null, signal: "SIGKILL", killReason: KillReason.startTimeout(300) })
    expect(startError(timedOut, "file:///w.ts").message).toContain(
      "failed to start: it did not become ready within 300 ms."
    )
    expect(startError(failed({}), "file:///w.ts").stderr).toBe("the stderr")
  })

  it("puts the worker's own words first", () => {
    expect(startError(failed({ startFailure: "Error: boom" }), "file:///w.ts").message).toBe(
      "Error: boom\n(Worker process 42 of file:///w.ts could not start: it exited with code 1. " +
        "Its stderr is in this error's `stderr`.)"
    )
  })

  it("of a broken pool counts the failures and keeps the last one's words and stderr", () => {
    const broken = brokenError(3, startError(failed({}), "file:///w.ts"))
    expect(broken.message).toMatch(/^The pool is broken: workers failed to start 3 times in a row\. Worker process 42/)
    expect(broken.stderr).toBe("the stderr")
  })
})

describe("why the pool kills a worker", () => {
  it("counts as the kind of exit, in the words its tasks' WorkerCrashed carries", () => {
    expect([
      KillReason.startTimeout(300),
      KillReason.protocol("a frame from the worker is not JSON"),
      KillReason.hung(1000),
      KillReason.runaway("Spin", 50),
      KillReason.closedBusy,
      KillReason.closeTimedOut
    ]).toStrictEqual([
      { kind: "start_failed", message: "it did not become ready within 300 ms" },
      { kind: "protocol", message: "protocol error: a frame from the worker is not JSON" },
      {
        kind: "hung",
        message: "it stopped answering: its event loop was blocked for over 1000 ms while it was idle"
      },
      { kind: "runaway", message: "task \"Spin\" did not stop within 50 ms of being interrupted" },
      { kind: "shutdown", message: "the pool closed before its tasks finished" },
      { kind: "shutdown", message: "the pool was closing and the worker did not exit in time" }
    ])
  })
})
