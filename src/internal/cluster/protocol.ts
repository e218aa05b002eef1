/**
 * The cluster's protocol: one `effect/cluster` entity type whose messages are
 * the tasks (per task an Rpc that carries encoded payloads and outcomes, and
 * the pool's errors; one for its chunks) and a stats request. Shared by the
 * runner and the caller. The caller's service encodes and decodes, as it
 * does for a local pool: runners forward what they get.
 *
 * @internal
 */
import { Persisted } from "effect/cluster/ClusterSchema"
import * as Entity from "effect/cluster/Entity"
import * as Rpc from "effect/rpc/Rpc"
import * as Schema from "effect/Schema"
import { PoolErrorSchema } from "../../PoolError.ts"
import type * as Task from "../../Task.ts"
import type { Outcome } from "../service/backend.ts"
import { ExitKind } from "../wire/protocol.ts"

export const defect = Schema.Defect({ includeStack: true })

export const chunkTag = (tag: string) => `${tag}~chunk`
export const statsTag = "~effect-process-pool/stats"

/** The default entity type. */
export const defaultEntity = "effect-process-pool"

/**
 * A streaming task's window through the cluster, unless the call gives one:
 * the engine acknowledges each chunk of a stream before it sends the next,
 * about every 100 ms, so a runner reads this far ahead of its consumer.
 */
export const defaultClusterWindow = 16_384

/** A streaming task's message: its payload, encoded, and the caller's window. @internal */
export interface StreamRequest {
  readonly payload: unknown
  readonly window: number
}

/** The entity ids that tasks without a key are spread over. */
export const defaultSpread = 64

/** The runner's answer to a stats request. */
export const RunnerStats = Schema.Struct({
  runner: Schema.String,
  pid: Schema.Number,
  stats: Schema.String,
  /** The tags this runner serves. */
  served: Schema.Array(Schema.String)
})

export interface Protocol {
  readonly entity: Entity.Entity<string, Rpc.Any>
  readonly tasks: ReadonlyMap<string, Task.Task.Any>
}

/**
 * A value of `schema` in the form it crosses a boundary in, as a Schema: what
 * the task's codec makes of it (its JSON form, or for a binary task its
 * encoded form), so that runners forward values as they are, with no second
 * codec on the way.
 */
const wire = (task: Task.Task.Any, schema: Schema.Top): Schema.Top =>
  Schema.toEncoded(task.serialization === "binary" ? schema : Schema.toCodecJson(schema))

/**
 * An outcome as the cluster's Rpcs carry it (see `Outcome`): tagged, because
 * the cluster's binary wire tells the members of a union apart by a tag.
 *
 * @internal
 */
export type WireOutcome =
  | { readonly _tag: "Success" | "Failure" | "Defect"; readonly value?: unknown }
  | { readonly _tag: "Other"; readonly kind: number; readonly issue?: string }

const outcomeSchema = (task: Task.Task.Any) =>
  Schema.Union([
    Schema.Struct({ _tag: Schema.Literal("Success"), value: Schema.optionalKey(wire(task, task.successSchema)) }),
    Schema.Struct({ _tag: Schema.Literal("Failure"), value: Schema.optionalKey(wire(task, task.failureSchema)) }),
    // A defect as the worker encoded it: plain data, its name, message, stack and fields.
    Schema.Struct({ _tag: Schema.Literal("Defect"), value: Schema.optionalKey(Schema.Unknown) }),
    // Not served, interrupted, or a payload or result the worker could not convert, with the issue.
    Schema.Struct({ _tag: Schema.Literal("Other"), kind: Schema.Number, issue: Schema.optionalKey(Schema.String) })
  ])

/** An outcome as the cluster carries it. @internal */
export const toWire = ([kind, value]: Outcome): WireOutcome => {
  switch (kind) {
    case ExitKind.Success:
      return value === undefined ? { _tag: "Success" } : { _tag: "Success", value }
    case ExitKind.Failure:
      return value === undefined ? { _tag: "Failure" } : { _tag: "Failure", value }
    case ExitKind.Defect:
      return value === undefined ? { _tag: "Defect" } : { _tag: "Defect", value }
    default:
      return typeof value === "string" ? { _tag: "Other", kind, issue: value } : { _tag: "Other", kind }
  }
}

/** An outcome the cluster carried, as the service decodes it. @internal */
export const fromWire = (outcome: WireOutcome): Outcome => {
  switch (outcome._tag) {
    case "Success":
      return [ExitKind.Success, outcome.value]
    case "Failure":
      return [ExitKind.Failure, outcome.value]
    case "Defect":
      return [ExitKind.Defect, outcome.value]
    default:
      return [outcome.kind as ExitKind, outcome.issue]
  }
}

/**
 * One entity type: per task an Rpc that carries its encoded payload and gives
 * its outcome still encoded (or a pool error), one for its chunks, and stats.
 */
export const makeProtocol = (
  tasks: ReadonlyArray<Task.Task.Any>,
  options: { readonly entity?: string | undefined; readonly persisted?: boolean | undefined }
): Protocol => {
  const byTag = new Map<string, Task.Task.Any>()
  const rpcs: Array<Rpc.Any> = []
  for (const task of tasks) {
    if (byTag.has(task._tag)) throw new Error(`effect-process-pool: two tasks share the tag "${task._tag}"`)
    byTag.set(task._tag, task)
    const payload = wire(task, task.payloadSchema)
    const outcome = outcomeSchema(task)
    if (task.stream) {
      rpcs.push(Rpc.make(task._tag, {
        // With the caller's window: how far ahead of its consumer the runner reads.
        payload: Schema.Struct({ payload, window: Schema.Number }),
        success: wire(task, task.successSchema),
        error: Schema.Union([outcome, PoolErrorSchema]),
        defect,
        stream: true
      }))
      continue
    }
    rpcs.push(Rpc.make(task._tag, { payload, success: outcome, error: PoolErrorSchema, defect }))
    rpcs.push(Rpc.make(chunkTag(task._tag), {
      payload: Schema.Array(payload),
      // Every item's value when all succeeded, as the local pool's chunks do; else every item's outcome.
      success: Schema.Struct({
        values: Schema.optional(Schema.Array(wire(task, task.successSchema))),
        outcomes: Schema.optional(Schema.Array(Schema.Union([outcome, PoolErrorSchema])))
      }),
      error: PoolErrorSchema,
      defect
    }))
  }
  rpcs.push(Rpc.make(statsTag, { success: RunnerStats }))
  let entity = Entity.make(options.entity ?? defaultEntity, rpcs)
  if (options.persisted === true) entity = entity.annotateRpcs(Persisted, true)
  return { entity: entity as Entity.Entity<string, Rpc.Any>, tasks: byTag }
}
