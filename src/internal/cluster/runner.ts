/**
 * The runner: the layer behind `ProcessPool.layerRunner`, which registers
 * the entity and runs each message in the runner's own local pool.
 *
 * @internal
 */
import * as Entity from "effect/cluster/Entity"
import { Sharding } from "effect/cluster/Sharding"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as SqlClient from "effect/sql/SqlClient"
import * as Stream from "effect/Stream"
import { type InvalidOption, StorageUnreachable, WorkerCrashed, type WorkerStartError } from "../../PoolError.ts"
import type { RunnerOptions } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"
import { checkRunner } from "../options.ts"
import { makeLocal } from "../processes/pool.ts"
import { AllSucceeded, type Call, type Conversion } from "../service/backend.ts"
import { isOutcome } from "../service/codec.ts"
import { Chunker } from "../service/mapping.ts"
import { makeLease } from "./lease.ts"
import { lostOn, makeLedger } from "./ledger.ts"
import { chunkTag, makeProtocol, statsTag, type StreamRequest, toWire } from "./protocol.ts"

/** The caller bounds a call's whole life with its timeout: the runner's local pool runs it as it comes. */
const asSent: Call = { timeout: 0, window: undefined, key: undefined }

/** A runner forwards what it gets: the payload as the caller encoded it, the outcome as the worker did. */
const forward: Conversion = {
  encode: (payload) => payload,
  decode: (kind, value) => Exit.succeed(toWire([kind, value]))
}

/** The layer behind `ProcessPool.layerRunner`. */
export const layerRunner = (
  options: RunnerOptions
): Layer.Layer<never, WorkerStartError | InvalidOption, Sharding> =>
  Layer.effectDiscard(Effect.gen(function*() {
    const invalid = checkRunner(options)
    if (invalid !== undefined) return yield* invalid
    const { entity: entityName, maxStall, persisted, tasks, ...poolOptions } = options
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
    // One attempt each: the caller's service retries idempotent tasks, wherever their worker was lost. Payloads
    // and outcomes stay encoded: the caller's service encodes and decodes them.
    const local = yield* makeLocal(poolOptions)
    const lease = yield* makeLease(maxStall)
    // Per task, how long its items take here: the size of the parts a chunk comes back in.
    const timers = new Map<string, Chunker>()
    const timerOf = (tag: string) => {
      let timer = timers.get(tag)
      if (timer === undefined) timers.set(tag, timer = new Chunker("auto", local.chunking))
      return timer
    }

    // Built for each entity the runner hosts, where the engine provides the runner's own address.
    const buildHandlers = Effect.gen(function*() {
      const address = yield* Entity.CurrentRunnerAddress
      const self = `${address.host}:${address.port}`
      /**
       * Runs a message's task once the ledger says it is its first delivery,
       * and only while the runner holds the work (lease.ts): the hold is
       * taken as the message arrives.
       */
      const guard = <A, E, R>(
        request: Entity.Request<any>,
        task: Task.Task.Any,
        run: (call: Call) => Effect.Effect<A, E, R>
      ): Effect.Effect<A, E | WorkerCrashed | StorageUnreachable, R> =>
        Effect.suspend(() => {
          const call: Call = { ...asSent, admit: lease.take(task._tag, self) }
          return ledger === undefined ? run(call) : Effect.flatMap(
            // Without its record the task does not run: the caller is told why.
            Effect.mapError(
              ledger.start(String(request.requestId), self),
              (failed) => new StorageUnreachable({ task: task._tag, unreachableFor: 0, reason: failed.reason })
            ),
            (lost): Effect.Effect<A, E | WorkerCrashed, R> =>
              lost === undefined ? run(call) : Effect.fail(lostOn(task._tag, lost, self))
          )
        })

      const handlers: Record<string, (request: Entity.Request<any>) => any> = {}
      for (const task of protocol.tasks.values()) {
        if (task.stream) {
          handlers[task._tag] = (request) =>
            Stream.unwrap(guard(request, task, (call) =>
              Effect.sync(() =>
                // Read ahead by the caller's window, besides the local pool's own: the engine acknowledges each
                // chunk it sends on, so a chunk holds what was read meanwhile.
                Stream.mapError(
                  local.open(task, (request.payload as StreamRequest).payload, call),
                  (e) => isOutcome(e) ? toWire(e) : e
                ).pipe(Stream.buffer({ capacity: (request.payload as StreamRequest).window }))
              )))
        } else {
          handlers[task._tag] = (request) =>
            guard(request, task, (call) => local.call(task, request.payload, call, forward))
          // One chunk of the caller's is one batch here: its parts spread it over the workers' time.
          handlers[chunkTag(task._tag)] = (request) =>
            guard(request, task, (call) =>
              Effect.map(
                local.chunk(
                  task as Task.Task.Unary,
                  request.payload as ReadonlyArray<unknown>,
                  timerOf(task._tag),
                  call
                ),
                (raw) =>
                  raw instanceof AllSucceeded
                    ? { values: raw.values }
                    : { outcomes: raw.map((item) => isOutcome(item) ? toWire(item) : item) }
              ))
        }
      }
      handlers[statsTag] = () =>
        Effect.map(local.stats, (stats) => ({
          runner: self,
          pid: process.pid,
          stats: JSON.stringify(stats),
          served: Array.from(protocol.tasks.keys())
        }))
      return handlers
    })

    yield* sharding.registerEntity(protocol.entity, buildHandlers, {
      concurrency: "unbounded",
      mailboxCapacity: "unbounded",
      // A task's defect is its caller's answer, not the entity's: a fatal one would restart the entity and
      // replay every request it holds.
      disableFatalDefects: true
    })
  }))
