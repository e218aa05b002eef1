/**
 * The ledger: which messages a runner started, in a table beside the
 * cluster's own in its SQL storage, so that a volatile message the engine
 * delivers again after its runner died fails with `WorkerCrashed` rather than
 * running a second time.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as SqlClient from "effect/sql/SqlClient"
import { WorkerCrashed } from "../../PoolError.ts"
import { describe } from "./storage.ts"

export interface Ledger {
  /** `undefined` the first time a message is seen; else who started it. */
  readonly start: (
    requestId: string,
    runner: string
  ) => Effect.Effect<{ readonly runner: string; readonly pid: number } | undefined, StorageFailed>
}

const ledgerTable = "effect_process_pool_started"

export const makeLedger = Effect.fnUntraced(function*(sql: SqlClient.SqlClient) {
  const table = sql(ledgerTable)
  yield* sql`CREATE TABLE IF NOT EXISTS ${table} (
    request_id BIGINT PRIMARY KEY,
    runner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now()
  )`.pipe(
    // Runners that start together race on the table's creation: the loser's error is harmless.
    Effect.retry({ times: 3, schedule: Schedule.spaced(50) }),
    Effect.orDie
  )
  // Records older than a day cannot be redelivered any more.
  yield* sql`DELETE FROM ${table} WHERE started_at < now() - interval '1 day'`.pipe(
    Effect.andThen(Effect.sleep("10 minutes")),
    Effect.forever,
    Effect.ignore,
    Effect.forkScoped
  )
  const pid = process.pid
  // The ids of one tick go to the database together, in one statement that does not wait for its
  // flush to disk: a record is visible to every runner as soon as it commits, and only a crash of the
  // database server itself could lose one. The statement answers with the ids it recorded, and with
  // the records that were there before it: who started those.
  type Waiting = {
    readonly id: string
    readonly runner: string
    readonly resume: (lost: Effect.Effect<{ runner: string; pid: number } | undefined, StorageFailed>) => void
  }
  let batch: Array<Waiting> = []
  const write = (waiting: ReadonlyArray<Waiting>) =>
    Effect.suspend(() => {
      const input = JSON.stringify(waiting.map((w) => ({ request_id: w.id, runner: w.runner })))
      return sql<{ request_id: string; runner: string | null; pid: number | null; fresh: boolean }>`
        WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true) AS setting),
        input AS (SELECT * FROM jsonb_to_recordset(${input}::jsonb) AS u(request_id BIGINT, runner TEXT)),
        fresh AS (
          INSERT INTO ${table} (request_id, runner, pid)
          SELECT input.request_id, input.runner, ${pid} FROM input, cfg
          ON CONFLICT (request_id) DO NOTHING
          RETURNING request_id
        )
        SELECT request_id, NULL AS runner, NULL AS pid, true AS fresh FROM fresh
        UNION ALL
        SELECT t.request_id, t.runner, t.pid, false AS fresh FROM ${table} t JOIN input USING (request_id)`
    }).pipe(
      Effect.flatMap((rows) =>
        Effect.sync(() => {
          const byId = new Map(rows.map((row) => [String(row.request_id), row]))
          for (const w of waiting) {
            const row = byId.get(w.id)
            // Neither recorded now nor before: another runner recorded it at the same moment.
            w.resume(Effect.succeed(
              row?.fresh === true ? undefined : { runner: row?.runner ?? "another runner", pid: row?.pid ?? 0 }
            ))
          }
        })
      ),
      // The database failed: so do these tasks, rather than run without a record, or wait for ever.
      Effect.catchCause((cause) =>
        Effect.sync(() => {
          const failed = Effect.fail(new StorageFailed(describe(Cause.squash(cause))))
          waiting.forEach((w) => w.resume(failed))
        })
      )
    )
  const flush = (run: (effect: Effect.Effect<void>) => unknown) => () => {
    const waiting = batch
    batch = []
    run(write(waiting))
  }
  const run = Effect.runForkWith(yield* Effect.context<never>())
  const ledger: Ledger = {
    start: (requestId, runner) =>
      Effect.callback((resume) => {
        if (batch.length === 0) setImmediate(flush(run))
        batch.push({ id: requestId, runner, resume })
      })
  }
  return ledger
})

/** The record of a start could not be written: the database failed, as `reason` says. @internal */
export class StorageFailed {
  readonly reason: string
  constructor(reason: string) {
    this.reason = reason
  }
}

/** The failure of a message that a lost runner had started. */
export const lostOn = (task: string, lost: { readonly runner: string; readonly pid: number }, self: string) =>
  new WorkerCrashed({
    pid: lost.pid,
    exitCode: null,
    signal: null,
    task,
    runner: lost.runner,
    reason: lost.runner === self && lost.pid === process.pid
      // The engine replays what an entity held when it rebuilds it after a defect of its own.
      ? `the engine delivered it again to the runner that had started it, ${self}, which did not run it twice`
      : `runner ${lost.runner} was lost while it held the task; ${self} received it again and did not run it twice`
  })
