/**
 * The caller: the backend behind `ProcessPool.layerCluster`. Each call is a
 * message to the entity type that runners serve (protocol.ts), and each
 * message runs in its runner's own local pool (runner.ts).
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
 * shard's new owner, whose ledger (ledger.ts) fails it with `WorkerCrashed`
 * rather than running it a second time.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import { Sharding } from "effect/cluster/Sharding"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { type PoolError, SerializationError, TaskNotServed, TaskTimeout } from "../../PoolError.ts"
import type { ClusterOptions, Stats, SubmitOptions } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"
import { checkCluster, millis } from "../options.ts"
import { AllSucceeded, type Backend, type ChunkResult, type ChunkTimer } from "../service/backend.ts"
import { makeOutcomeCounter } from "../telemetry/poolMetrics.ts"
import { codecFor, Invalid } from "../wire/codec.ts"
import { chunkTag, defaultSpread, makeProtocol, RunnerStats, statsTag } from "./protocol.ts"

/** The engine's own routing errors never reach the user as such: they mean the cluster is unwell. */
const engineErrors = ["MailboxFull", "AlreadyProcessingMessage", "PersistenceError", "EntityNotAssignedToRunner"]
const orDieEngine = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    effect,
    (e: any) => typeof e === "object" && e !== null && engineErrors.includes(e._tag),
    (e) => Effect.die(e)
  ) as Effect.Effect<A, E, R>

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
      let call = orDieEngine(Effect.suspend(() => clientFor(entityId(key))[task._tag](payload)))
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

  /**
   * One chunk of good payloads on one runner. A pool error, such as a lost
   * runner, fails the chunk (the service retries an idempotent task's chunk);
   * a defect is every item's.
   */
  const runChunk = (task: Task.Task.Unary, items: ReadonlyArray<unknown>, key: string | undefined) =>
    orDieEngine(Effect.suspend(() => clientFor(entityId(key))[chunkTag(task._tag)](items))).pipe(
      Effect.map((reply: any): ChunkResult => reply.exits ?? new AllSucceeded(reply.values)),
      Effect.catchCause((cause): Effect.Effect<ChunkResult, PoolError> =>
        Cause.hasInterruptsOnly(cause) || Cause.hasFails(cause)
          ? Effect.failCause(cause as Cause.Cause<PoolError>)
          : Effect.succeed(items.map(() => Exit.failCause(cause)))
      )
    ) as Effect.Effect<ChunkResult, PoolError>

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
          exit ?? (results instanceof AllSucceeded ? Exit.succeed(results.values[at++]) : results[at++])
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
          if (exit.value instanceof AllSucceeded) {
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
