/**
 * The cluster's protocol: one `effect/cluster` entity type whose messages are
 * the tasks (per task an Rpc with its Schemas and the pool's errors, one for
 * its chunks) and a stats request. Shared by the runner and the caller.
 *
 * @internal
 */
import { Persisted } from "effect/cluster/ClusterSchema"
import * as Entity from "effect/cluster/Entity"
import * as Rpc from "effect/rpc/Rpc"
import * as Schema from "effect/Schema"
import { PoolErrorSchema } from "../../PoolError.ts"
import type * as Task from "../../Task.ts"

export const defect = Schema.Defect({ includeStack: true })

export const chunkTag = (tag: string) => `${tag}~chunk`
export const statsTag = "~effect-process-pool/stats"

/** The default entity type. */
export const defaultEntity = "effect-process-pool"

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

/** One entity type: per task an Rpc with its Schemas (and the pool's errors), one for its chunks, and stats. */
export const makeProtocol = (
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
