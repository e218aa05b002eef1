/**
 * The caller: the backend behind `ProcessPool.layerCluster`. Each call is a
 * message to the entity type that runners serve (protocol.ts), and each
 * message runs in its runner's own local pool (runner.ts).
 *
 * ```
 *  CALLER                           effect/cluster                RUNNER
 *  service › encode p ── bad ─▶ SerializationError (nothing sent)
 *  layerCluster › call              Sharding › makeClient         layerRunner › handler
 *   entity id: key, or the next of `spread` ids (shards spread over runners)
 *   ─────────────── Rpc (tag, encoded p) ───────────────────▶ ledger: first delivery?
 *                                                               no ─▶ WorkerCrashed { runner }
 *                                                               yes ─▶ local pool › call
 *   ◀──────── outcome, still encoded / PoolError ────────────
 *  service › decode: success / failure (same class) / defect (remote stack)
 *  service › WorkerCrashed { runner } and idempotent ─▶ again, following task.retry
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
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Stream from "effect/Stream"
import {
  isPoolError,
  type PoolError,
  SerializationError,
  StorageUnreachable,
  TaskNotServed,
  TaskTimeout,
  WorkerCrashed
} from "../../PoolError.ts"
import type { ClusterOptions, Stats } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"
import { checkCluster, millis } from "../options.ts"
import { windowOf } from "../processes/stream.ts"
import {
  AllSucceeded,
  type Backend,
  type Call,
  type ChunkTimer,
  type Conversion,
  type Outcome,
  type RawChunk
} from "../service/backend.ts"
import { makeOutcomeCounter } from "../telemetry/poolMetrics.ts"
import { encodeDefect } from "../wire/codec.ts"
import { ExitKind } from "../wire/protocol.ts"
import {
  chunkTag,
  defaultClusterWindow,
  defaultSpread,
  fromWire,
  makeProtocol,
  RunnerStats,
  statsTag,
  type WireOutcome
} from "./protocol.ts"
import { describe, makeStorageWatch } from "./storage.ts"

/** The engine's own routing errors never reach the user as such: they mean the cluster is unwell. */
const engineErrors = ["MailboxFull", "AlreadyProcessingMessage", "PersistenceError", "EntityNotAssignedToRunner"]
const orDieEngine = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(
    effect,
    (e: any) => typeof e === "object" && e !== null && engineErrors.includes(e._tag),
    (e) => Effect.die(e)
  ) as Effect.Effect<A, E, R>

/** The engine's and the SQL client's errors that mean the storage failed. */
const isStorageFault = (error: unknown): boolean =>
  Predicate.isTagged(error, "PersistenceError") || Predicate.isTagged(error, "SqlError")

/** How long a call waits for a first runner before the log says that none has answered. */
const noRunnerAfter = 5_000

/** `effect`, with a warning in the log should it wait `noRunnerAfter` for a runner's answer. */
const warnWhileNoRunner = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.flatMap(
    Effect.forkChild(Effect.delay(
      Effect.logWarning(
        `effect-process-pool: no runner of the cluster has answered for ${noRunnerAfter / 1000} s. Calls wait ` +
          `for one (within their timeout). Start at least one: a process with ProcessPool.layerRunner({ tasks, ` +
          `worker }) over the same cluster storage.`
      ),
      noRunnerAfter
    )),
    (warning) => Effect.ensuring(effect, Fiber.interrupt(warning))
  )

/** A chunk's answer from its runner: see the chunk's Rpc in protocol.ts. */
interface ChunkReply {
  readonly values?: ReadonlyArray<unknown> | undefined
  readonly outcomes?: ReadonlyArray<WireOutcome | PoolError> | undefined
}

/** A call's whole life, from the check that a runner serves its task to its outcome, bounded by its timeout. */
const bounded = <A, E>(tag: string, call: Call, effect: Effect.Effect<A, E>): Effect.Effect<A, E | TaskTimeout> =>
  call.timeout === 0 ? effect : Effect.timeoutOrElse(effect, {
    duration: call.timeout,
    orElse: () => Effect.fail(new TaskTimeout({ task: tag, timeout: call.timeout, where: "cluster" }))
  })

/** The backend behind `ProcessPool.layerCluster`. */
export const makeCluster = Effect.fnUntraced(function*(options: ClusterOptions) {
  const invalid = checkCluster(options)
  if (invalid !== undefined) return yield* invalid
  // "closed" once the layer's scope has closed: statsStream ends there.
  let state: Stats["state"] = "open"
  yield* Effect.addFinalizer(() => Effect.sync(() => state = "closed"))
  const protocol = makeProtocol(options.tasks, options)
  const storage = yield* makeStorageWatch(millis(options.storageTimeout ?? "5 seconds", 5_000))
  /** `effect`, bounded by the storage's outage, when the storage is watched. */
  const whileStored = <A, E>(task: string, effect: Effect.Effect<A, E>) =>
    storage === undefined ? effect : storage.bound(task, effect)

  /**
   * What a call ends with when its runner stopped it, as a runner stops its
   * entities when it can no longer hold their shards: the caller did not ask
   * for an interruption, so it gets a typed error.
   */
  const stoppedByRunner = (task: string): StorageUnreachable | WorkerCrashed =>
    storage?.current(task) ?? new WorkerCrashed({
      pid: 0,
      exitCode: null,
      signal: null,
      task,
      reason: "its runner stopped it before it ended: the runner could no longer hold the task's shard"
    })

  /**
   * `effect`, with its runner's interruption, and the storage's errors
   * (which the engine raises as defects or undeclared failures), made typed. An interruption of the caller
   * itself is not caught.
   */
  const stoppedTyped = <A, E>(
    task: string,
    effect: Effect.Effect<A, E>
  ): Effect.Effect<A, E | StorageUnreachable | WorkerCrashed> =>
    Effect.catchCause(effect, (cause): Effect.Effect<never, E | StorageUnreachable | WorkerCrashed> => {
      if (Cause.hasInterruptsOnly(cause)) return Effect.fail(stoppedByRunner(task))
      // The storage's errors come as defects, or as failures the engine's types do not declare.
      const error = Cause.squash(cause)
      return isStorageFault(error)
        ? Effect.fail(
          storage?.current(task) ?? new StorageUnreachable({ task, unreachableFor: 0, reason: describe(error) })
        )
        : Effect.failCause(cause)
    })

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
  // could only answer with a defect. While no runner answers, the log says what to start.
  const confirmed = new Set<string>()
  const served = (task: Task.Task.Any): Effect.Effect<void, TaskNotServed> =>
    confirmed.has(task._tag) ? Effect.void : Effect.suspend(() => {
      if (!protocol.tasks.has(task._tag)) return Effect.fail(new TaskNotServed({ task: task._tag, where: "caller" }))
      const asked = orDieEngine(clientFor(entityId(undefined))[statsTag](undefined)) as Effect.Effect<
        typeof RunnerStats.Type
      >
      return Effect.flatMap(warnWhileNoRunner(asked), (answer) => {
        for (const tag of answer.served) confirmed.add(tag)
        return confirmed.has(task._tag)
          ? Effect.void
          : Effect.fail(new TaskNotServed({ task: task._tag, where: "runners" }))
      })
    })

  const call = (task: Task.Task.Any, payload: unknown, options: Call, convert: Conversion) =>
    Effect.suspend(() => {
      const encoded = convert.encode(payload)
      if (encoded instanceof SerializationError) return Effect.fail(encoded)
      const sent = stoppedTyped(
        task._tag,
        orDieEngine<WireOutcome, PoolError, never>(
          Effect.suspend(() => clientFor(entityId(options.key))[task._tag](encoded))
        )
      )
      return bounded(
        task._tag,
        options,
        whileStored(
          task._tag,
          Effect.andThen(served(task), Effect.flatMap(sent, (outcome) => convert.decode(...fromWire(outcome))))
        )
      )
    })

  const open = (task: Task.Task.Any, payload: unknown, call: Call): Stream.Stream<unknown, Outcome | PoolError> => {
    const stream = Stream.unwrap(
      Effect.map(
        served(task),
        (): Stream.Stream<unknown, Outcome | PoolError> =>
          Stream.mapError(
            clientFor(entityId(call.key))[task._tag]({ payload, window: windowOf(call.window, defaultClusterWindow) }, {
              streamBufferSize: 16
            }) as Stream.Stream<
              unknown,
              WireOutcome | PoolError
            >,
            (error) => isPoolError(error) ? error : fromWire(error)
          ).pipe(Stream.catchCause((cause): Stream.Stream<never, Outcome | PoolError> =>
            Cause.hasInterruptsOnly(cause) ? Stream.fail(stoppedByRunner(task._tag)) : Stream.failCause(cause)
          ))
      )
    )
    const stored = storage === undefined ? stream : Stream.interruptWhen(stream, storage.whenOut(task._tag))
    if (call.timeout === 0) return stored
    // The whole stream, as on a local pool.
    return Stream.interruptWhen(
      stored,
      Effect.andThen(
        Effect.sleep(call.timeout),
        Effect.fail(new TaskTimeout({ task: task._tag, timeout: call.timeout, where: "cluster" }))
      )
    )
  }

  /**
   * One chunk on one runner: every item's outcome. A pool error, such as a
   * lost runner, fails the chunk (the service retries an idempotent task's
   * chunk); a defect, such as a runner's, is every item's.
   */
  const chunk = (
    task: Task.Task.Unary,
    payloads: ReadonlyArray<unknown>,
    timer: ChunkTimer,
    { key }: Pick<Call, "key">
  ): Effect.Effect<RawChunk, PoolError> =>
    whileStored(
      task._tag,
      Effect.andThen(served(task), () => {
        const started = performance.now()
        return stoppedTyped(
          task._tag,
          orDieEngine<ChunkReply, PoolError, never>(
            Effect.suspend(() => clientFor(entityId(key))[chunkTag(task._tag)](payloads))
          )
        ).pipe(
          Effect.map((reply): RawChunk => {
            timer.record(payloads.length, performance.now() - started)
            return reply.outcomes === undefined
              ? new AllSucceeded(reply.values ?? [])
              : reply.outcomes.map((item) => isPoolError(item) ? item : fromWire(item))
          }),
          Effect.catchCause((cause): Effect.Effect<RawChunk, PoolError> => {
            if (Cause.hasInterruptsOnly(cause) || Cause.hasFails(cause)) return Effect.failCause(cause)
            const defect: Outcome = [ExitKind.Defect, encodeDefect(Cause.squash(cause))]
            return Effect.succeed(payloads.map(() => defect))
          })
        )
      })
    )

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
  const counter = options.metrics === false
    ? undefined
    : makeOutcomeCounter(yield* Effect.context<never>(), options.name ?? "default")
  return {
    call: counter === undefined ? call : (task, payload, options, convert) =>
      Effect.onExit(
        call(task, payload, options, convert),
        (exit) => Effect.sync(() => counter.exit(task._tag, exit))
      ),
    open: counter === undefined ?
      open :
      (task, payload, options) =>
        Stream.onExit(open(task, payload, options), (exit) =>
          Effect.sync(() => {
            const error = exit._tag === "Failure" ? Cause.findErrorOption(exit.cause) : undefined
            return error === undefined || error._tag === "None"
              ? counter.exit(task._tag, exit)
              : counter.raw(task._tag, error.value)
          })),
    chunk: counter === undefined ?
      chunk :
      (task, payloads, timer, key) =>
        Effect.onExit(chunk(task, payloads, timer, key), (exit) =>
          Effect.sync(() => {
            if (exit._tag === "Failure") return counter.exit(task._tag, exit, payloads.length)
            if (exit.value instanceof AllSucceeded) return counter.exit(task._tag, exit, payloads.length)
            for (const item of exit.value) counter.raw(task._tag, item)
          })),
    unsent: counter?.unsent,
    stats,
    concurrency: options.concurrency ?? 16,
    // A chunk's trip through the cluster costs about a millisecond: chunks of about 50 ms keep it small.
    chunking: { targetMillis: 50, maxItems: 1024 }
  } satisfies Backend
})
