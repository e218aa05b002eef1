/**
 * The cluster side of the pool: one `effect/cluster` entity type that serves
 * tasks on runners, each message run in the runner's own local pool, and the
 * `ProcessPool` service backed by it on the caller's side.
 *
 * ```
 *  CALLER                           effect/cluster                RUNNER
 *  layerCluster › submit            Sharding › makeClient         layerRunner › handler
 *   encode p ── bad ─▶ SerializationError (nothing sent)
 *   entity id: key, or the next of `spread` ids (shards spread over runners)
 *   ─────────────── Rpc (tag, Schemas of the task) ─────────▶ ledger: first delivery?
 *                                                               no ─▶ WorkerCrashed { runner }
 *                                                               yes ─▶ local pool › submit
 *   ◀── success / failure (same class) / PoolError / defect (remote stack) ──
 *   WorkerCrashed { runner } and idempotent ─▶ again, following task.retry
 * ```
 *
 * A volatile message whose runner dies is sent again by the engine to the
 * shard's new owner. The ledger, a table beside the cluster's own in its SQL
 * storage, holds the id of every message a runner started, so that such a
 * message ends in `WorkerCrashed` rather than running a second time.
 *
 * Loaded only by the cluster layers, never by a local pool.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import { Persisted } from "effect/cluster/ClusterSchema"
import * as Entity from "effect/cluster/Entity"
import { Sharding } from "effect/cluster/Sharding"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Rpc from "effect/rpc/Rpc"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as SqlClient from "effect/sql/SqlClient"
import * as Stream from "effect/Stream"
import {
  type InvalidOption,
  type PoolError,
  PoolErrorSchema,
  SerializationError,
  TaskNotServed,
  TaskTimeout,
  WorkerCrashed,
  type WorkerStartError
} from "../../PoolError.ts"
import type { ClusterOptions, RunnerOptions, Stats, SubmitOptions } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"
import { checkCluster, checkRunner, millis } from "../options.ts"
import { makeLocal } from "../processes/pool.ts"
import { type Backend, type ChunkResult, type ChunkTimer, Values } from "../service/backend.ts"
import { makeService } from "../service/service.ts"
import { makeOutcomeCounter } from "../telemetry/metrics.ts"
import { codecFor, Invalid } from "../wire/codec.ts"

const defect = Schema.Defect({ includeStack: true })

const chunkTag = (tag: string) => `${tag}~chunk`
const statsTag = "~effect-process-pool/stats"

/** The default entity type. */
export const defaultEntity = "effect-process-pool"

/** The entity ids that tasks without a key are spread over. */
export const defaultSpread = 64

/** The runner's answer to a stats request. */
const RunnerStats = Schema.Struct({
  runner: Schema.String,
  pid: Schema.Number,
  stats: Schema.String,
  /** The tags this runner serves. */
  served: Schema.Array(Schema.String)
})

interface Protocol {
  readonly entity: Entity.Entity<string, Rpc.Any>
  readonly tasks: ReadonlyMap<string, Task.Task.Any>
}

/** One entity type: per task an Rpc with its Schemas (and the pool's errors), one for its chunks, and stats. */
const makeProtocol = (
  tasks: ReadonlyArray<Task.Task.Any>,
  options: { readonly entity?: string | undefined; readonly persisted?: boolean | undefined }
): Protocol => {
  const byTag = new Map<string, Task.Task.Any>()
  const rpcs: Array<Rpc.Any> = []
  for (const task of tasks) {
    if (byTag.has(task._tag)) throw new Error(`effect-process-pool: two tasks share the tag "${task._tag}"`)
    byTag.set(task._tag, task)
    const error = Schema.Union([task.failureSchema, PoolErrorSchema])
    rpcs.push(Rpc.make(task._tag, {
      payload: task.payloadSchema,
      success: task.successSchema,
      error,
      defect,
      stream: task.stream
    }))
    if (!task.stream) {
      rpcs.push(Rpc.make(chunkTag(task._tag), {
        payload: Schema.Array(task.payloadSchema),
        // Every item's value when all succeeded, as the local pool's chunks do: an Exit each costs far more.
        success: Schema.Struct({
          values: Schema.optional(Schema.Array(task.successSchema)),
          exits: Schema.optional(Schema.Array(Schema.Exit(task.successSchema, error, defect)))
        }),
        error: PoolErrorSchema,
        defect
      }))
    }
  }
  rpcs.push(Rpc.make(statsTag, { success: RunnerStats }))
  let entity = Entity.make(options.entity ?? defaultEntity, rpcs)
  if (options.persisted === true) entity = entity.annotateRpcs(Persisted, true)
  return { entity: entity as Entity.Entity<string, Rpc.Any>, tasks: byTag }
}

// ---------------------------------------------------------------------------
// The ledger: which messages a runner started
// ---------------------------------------------------------------------------

interface Ledger {
  /** `undefined` the first time a message is seen; else who started it. */
  readonly start: (
    requestId: string,
    runner: string
  ) => Effect.Effect<{ readonly runner: string; readonly pid: number } | undefined>
}

const ledgerTable = "effect_process_pool_started"

const makeLedger = Effect.fnUntraced(function*(sql: SqlClient.SqlClient) {
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
    readonly resume: (lost: Effect.Effect<{ runner: string; pid: number } | undefined>) => void
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
      Effect.catchCause((cause) => Effect.sync(() => waiting.forEach((w) => w.resume(Effect.die(Cause.squash(cause))))))
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

/** The failure of a message that a lost runner had started. */
const lostOn = (task: string, lost: { readonly runner: string; readonly pid: number }, self: string) =>
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

// ---------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------

/** The layer behind `ProcessPool.layerRunner`. */
export const layerRunner = (
  options: RunnerOptions
): Layer.Layer<never, WorkerStartError | InvalidOption, Sharding> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const invalid = checkRunner(options)
    if (invalid !== undefined) return yield* invalid
    const { entity: entityName, persisted, tasks, ...poolOptions } = options
    const protocol = makeProtocol(tasks, { entity: entityName, persisted })
    const sharding = yield* Sharding
    const sql = yield* Effect.serviceOption(SqlClient.SqlClient)
    // Persisted messages are at least once by the engine's design: they are not refused when delivered again.
    const ledger = persisted === true || Option.isNone(sql) ? undefined : yield* makeLedger(sql.value)
    if (ledger === undefined && persisted !== true) {
      yield* Effect.logWarning(
        "effect-process-pool: no SqlClient on this runner, so a task whose runner dies may run twice"
      )
    }
    const pool = makeService(yield* makeLocal(poolOptions))

    // Built for each entity the runner hosts, where the engine provides the runner's own address.
    const buildHandlers = Effect.gen(function*() {
      const address = yield* Entity.CurrentRunnerAddress
      const self = `${address.host}:${address.port}`
      const guard = <A, E, R>(
        request: Entity.Request<any>,
        task: Task.Task.Any,
        run: Effect.Effect<A, E, R>
      ): Effect.Effect<A, E | WorkerCrashed, R> =>
        ledger === undefined ? run : Effect.flatMap(
          ledger.start(String(request.requestId), self),
          (lost): Effect.Effect<A, E | WorkerCrashed, R> =>
            lost === undefined ? run : Effect.fail(lostOn(task._tag, lost, self))
        )

      const handlers: Record<string, (request: Entity.Request<any>) => any> = {}
      for (const task of protocol.tasks.values()) {
        if (task.stream) {
          handlers[task._tag] = (request) =>
            Stream.unwrap(
              guard(
                request,
                task,
                Effect.sync(() => pool.submit(task, request.payload) as unknown as Stream.Stream<any>)
              )
            )
        } else {
          handlers[task._tag] = (request) => guard(request, task, pool.submit(task, request.payload) as any)
          handlers[chunkTag(task._tag)] = (request) =>
            guard(
              request,
              task,
              Effect.map(
                pool.mapExits(task as Task.Task.Unary, request.payload as ReadonlyArray<unknown>),
                (exits) => exits.every(Exit.isSuccess) ? { values: exits.map((exit) => exit.value) } : { exits }
              )
            )
        }
      }
      handlers[statsTag] = () =>
        Effect.map(pool.stats, (stats) => ({
          runner: self,
          pid: process.pid,
          stats: JSON.stringify(stats),
          served: Array.from(protocol.tasks.keys())
        }))
      return handlers as any
    })

    yield* sharding.registerEntity(protocol.entity, buildHandlers, {
      concurrency: "unbounded",
      mailboxCapacity: "unbounded",
      // A task's defect is its caller's answer, not the entity's: a fatal one would restart the entity and
      // replay every request it holds.
      disableFatalDefects: true
    })
  }))

// ---------------------------------------------------------------------------
// Caller
// ---------------------------------------------------------------------------

/** The engine's own routing errors never reach the user as such: they mean the cluster is unwell. */
const engineErrors = ["MailboxFull", "AlreadyProcessingMessage", "PersistenceError", "EntityNotAssignedToRunner"]
const orDieEngine = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    effect,
    (e: any) => typeof e === "object" && e !== null && engineErrors.includes(e._tag),
    (e) => Effect.die(e)
  ) as Effect.Effect<A, E, R>

const isRunnerLost = (e: unknown): boolean => e instanceof WorkerCrashed && e.runner !== undefined

/** Follows an idempotent task's retry schedule when its runner was lost. */
const withRetry = <A, E, R>(task: Task.Task.Any, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  task.idempotent && task.retry !== undefined
    ? Effect.retry(effect, { schedule: task.retry, while: isRunnerLost })
    : effect

const encodeFirst = (task: Task.Task.Any, payload: unknown): SerializationError | undefined => {
  const encoded = codecFor(task).encodePayload(payload)
  return encoded instanceof Invalid
    ? new SerializationError({ task: task._tag, direction: "payload", issue: encoded.issue, side: "caller" })
    : undefined
}

/** The backend behind `ProcessPool.layerCluster`. */
export const makeCluster = Effect.fnUntraced(function*(options: ClusterOptions) {
  const invalid = checkCluster(options)
  if (invalid !== undefined) return yield* invalid
  // "closed" once the layer's scope has closed: statsStream ends there.
  let state: Stats["state"] = "open"
  yield* Effect.addFinalizer(() => Effect.sync(() => state = "closed"))
  const protocol = makeProtocol(options.tasks, options)
  const spread = options.spread ?? defaultSpread
  const makeClient = yield* (protocol.entity.client as Effect.Effect<any, never, Sharding>) as Effect.Effect<
    (id: string) => Record<string, (input: unknown, options?: unknown) => any>,
    never,
    Sharding
  >
  let next = 0
  const entityId = (key: string | undefined): string => key ?? String(next++ % spread)
  const clients = new Map<string, Record<string, (input: unknown, options?: unknown) => any>>()
  const clientFor = (id: string) => {
    let client = clients.get(id)
    if (client === undefined) clients.set(id, client = makeClient(id))
    return client
  }

  // A tag is sent once a runner has said that it serves it: a runner asked for a tag it does not know
  // could only answer with a defect.
  const confirmed = new Set<string>()
  const served = (task: Task.Task.Any): Effect.Effect<void, TaskNotServed> =>
    confirmed.has(task._tag) ? Effect.void : Effect.suspend(() => {
      const refused = Effect.fail(new TaskNotServed({ task: task._tag }))
      if (!protocol.tasks.has(task._tag)) return refused
      return Effect.flatMap(
        orDieEngine(clientFor(entityId(undefined))[statsTag](undefined)) as Effect.Effect<typeof RunnerStats.Type>,
        (answer) => {
          for (const tag of answer.served) confirmed.add(tag)
          return confirmed.has(task._tag) ? Effect.void : refused
        }
      )
    })

  const submitOne = (task: Task.Task.Any, payload: unknown, submitOptions: SubmitOptions | undefined) =>
    Effect.suspend(() => {
      const invalid = encodeFirst(task, payload)
      if (invalid !== undefined) return Effect.fail(invalid)
      const key = submitOptions?.key
      let call = withRetry(task, orDieEngine(Effect.suspend(() => clientFor(entityId(key))[task._tag](payload))))
      const timeout = submitOptions?.timeout
      if (timeout !== undefined) {
        const ms = millis(timeout, 0)
        call = Effect.timeoutOrElse(call, {
          duration: ms,
          orElse: () => Effect.fail(new TaskTimeout({ task: task._tag, timeout: ms }))
        })
      }
      return Effect.andThen(served(task), call)
    })

  const submitStream = (task: Task.Task.Any, payload: unknown, submitOptions: SubmitOptions | undefined) =>
    Stream.unwrap(
      Effect.as(served(task), undefined).pipe(Effect.map(() => {
        const invalid = encodeFirst(task, payload)
        if (invalid !== undefined) return Stream.fail(invalid)
        const client = clientFor(entityId(submitOptions?.key))
        const stream: Stream.Stream<any, any> = client[task._tag](payload, {
          streamBufferSize: submitOptions?.window ?? 16
        })
        return stream
      }))
    )

  /** One chunk of good payloads on one runner. A lost runner fails every item of the chunk. */
  const runChunk = (task: Task.Task.Unary, items: ReadonlyArray<unknown>, key: string | undefined) =>
    withRetry(
      task,
      orDieEngine(Effect.suspend(() => clientFor(entityId(key))[chunkTag(task._tag)](items)))
    ).pipe(
      Effect.map((reply: any): ChunkResult => reply.exits ?? new Values(reply.values)),
      Effect.catchCause((cause): Effect.Effect<ChunkResult> =>
        Cause.hasInterruptsOnly(cause)
          ? Effect.failCause(cause as Cause.Cause<never>)
          : Effect.succeed(items.map(() => Exit.failCause(cause)))
      )
    ) as Effect.Effect<ChunkResult>

  /**
   * One chunk on one runner: every item's outcome. Bad payloads are refused
   * here, item by item, before anything is sent; a lost runner fails every
   * item it held.
   */
  const chunk = (
    task: Task.Task.Unary,
    payloads: ReadonlyArray<unknown>,
    timer: ChunkTimer,
    key: string | undefined
  ): Effect.Effect<ChunkResult, PoolError> =>
    Effect.andThen(served(task), () => {
      const exits: Array<Exit.Exit<any, any> | undefined> = payloads.map((item) => {
        const invalid = encodeFirst(task, item)
        return invalid === undefined ? undefined : Exit.fail(invalid)
      })
      const good = payloads.filter((_, i) => exits[i] === undefined)
      if (good.length === 0) return Effect.succeed(exits as Array<Exit.Exit<any, any>>)
      const started = performance.now()
      return Effect.map(runChunk(task, good, key), (results): ChunkResult => {
        timer.record(good.length, performance.now() - started)
        if (good.length === payloads.length) return results
        let at = 0
        return exits.map((exit) =>
          exit ?? (results instanceof Values ? Exit.succeed(results.values[at++]) : results[at++])
        )
      })
    })

  /** Asks every entity id that spread work goes to, and keeps one answer per runner. */
  const stats = Effect.gen(function*() {
    if (state === "closed") {
      return { state, queued: 0, inflight: 0, running: 0, crashes: 0, workers: [] } satisfies Stats
    }
    const answers = yield* Effect.forEach(
      Array.from({ length: spread }, (_, i) => String(i)),
      (id) => Effect.option(orDieEngine(clientFor(id)[statsTag](undefined)) as Effect.Effect<typeof RunnerStats.Type>),
      { concurrency: 16 }
    )
    const byRunner = new Map<string, { runner: string; pid: number; stats: Stats }>()
    for (const answer of answers) {
      if (Option.isSome(answer) && !byRunner.has(answer.value.runner)) {
        byRunner.set(answer.value.runner, { ...answer.value, stats: JSON.parse(answer.value.stats) })
      }
    }
    const runners = Array.from(byRunner.values()).sort((a, b) => a.runner.localeCompare(b.runner))
    const sum = (f: (s: Stats) => number) => runners.reduce((n, r) => n + f(r.stats), 0)
    return {
      state: "open",
      queued: sum((s) => s.queued),
      inflight: sum((s) => s.inflight),
      running: sum((s) => s.running),
      crashes: sum((s) => s.crashes),
      workers: runners.flatMap((r) => r.stats.workers.map((w) => ({ ...w, runner: r.runner }))),
      runners
    } satisfies Stats
  }).pipe(Effect.orDie)

  // The caller's count of tasks by outcome, as a local pool's dispatcher keeps it.
  const count = options.metrics === false
    ? () => {}
    : makeOutcomeCounter(yield* Effect.context<never>(), options.name ?? "default")
  return {
    call: ((task, payload, submitOptions) =>
      Effect.onExit(
        submitOne(task, payload, submitOptions),
        (exit) => Effect.sync(() => count(task._tag, exit))
      )) as Backend["call"],
    open: ((task, payload, submitOptions) =>
      Stream.onExit(
        submitStream(task, payload, submitOptions),
        (exit) => Effect.sync(() => count(task._tag, exit))
      )) as Backend["open"],
    chunk: ((task, payloads, timer, key) =>
      Effect.onExit(chunk(task, payloads, timer, key), (exit) =>
        Effect.sync(() => {
          if (Exit.isFailure(exit)) {
            return count(task._tag, exit, payloads.length)
          }
          if (exit.value instanceof Values) {
            return count(task._tag, Exit.void, payloads.length)
          }
          for (const item of exit.value) {
            count(task._tag, item)
          }
        }))) as Backend["chunk"],
    stats,
    concurrency: options.concurrency ?? 16,
    // A chunk's trip through the cluster costs about a millisecond: chunks of about 50 ms keep it small.
    chunking: { targetMillis: 50, maxItems: 1024 }
  } satisfies Backend
})
