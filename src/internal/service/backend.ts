/**
 * What a backend gives the service: the few primitives that differ between
 * local processes, the in-memory layer and the cluster. Everything a caller
 * sees on top of them (the checks of options, `map`, `mapExits` and `stream`
 * with lazy input, ordering and chunk sizes, `stats` and `statsStream`) is
 * built once, in service.ts.
 *
 * @internal
 */
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Stream from "effect/Stream"
import type { PoolError } from "../../PoolError.ts"
import type { Stats, SubmitOptions } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"

/** A chunk's outcome when every item succeeded: their values alone. @internal */
export class AllSucceeded {
  readonly values: ReadonlyArray<unknown>
  constructor(values: ReadonlyArray<unknown>) {
    this.values = values
  }
}

/** A chunk's outcome: every item's `Exit`, or, when all succeeded, their values. @internal */
export type ChunkResult = Array<Exit.Exit<any, any>> | AllSucceeded

/** Every item's `Exit` of a chunk's outcome. @internal */
export const toExits = (result: ChunkResult): Array<Exit.Exit<any, any>> =>
  result instanceof AllSucceeded ? result.values.map(Exit.succeed) : result

/** Learns how long items take, to size the next chunks: see `Chunker` in mapping.ts. @internal */
export interface ChunkTimer {
  record(items: number, millis: number): void
  /** How many items the first part of a chunk holds: about half a millisecond of work, 1 until measured. */
  firstPartItems(): number
  /** What a worker said its next part would hold: its own measure of half a millisecond of work. */
  partSize(items: number): void
}

/**
 * One backend of the `ProcessPool` service. Options reach it checked.
 *
 * @internal
 */
export interface Backend {
  /** Runs one unary task: its success, typed failure, or a pool error. */
  readonly call: <T extends Task.Task.Any>(
    task: T,
    payload: Task.Task.Payload<T>,
    options: SubmitOptions | undefined
  ) => Effect.Effect<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError>
  /** Runs one streaming task: nothing is sent until the stream is pulled. */
  readonly open: <T extends Task.Task.Any>(
    task: T,
    payload: Task.Task.Payload<T>,
    options: SubmitOptions | undefined
  ) => Stream.Stream<Task.Task.Success<T>, Task.Task.Failure<T> | PoolError>
  /**
   * Runs one chunk of a `map`: each item's outcome in the result; a pool
   * error that ended the whole chunk fails the effect. `key` is the call's.
   */
  readonly chunk: <T extends Task.Task.Unary>(
    task: T,
    payloads: ReadonlyArray<Task.Task.Payload<T>>,
    timer: ChunkTimer,
    key: string | undefined
  ) => Effect.Effect<ChunkResult, PoolError>
  /** A snapshot of the backend. */
  readonly stats: Effect.Effect<Stats>
  /** How many chunks of one `map` are in flight at once, unless the call says. */
  readonly concurrency: number
  /** What `chunkSize: "auto"` aims at: milliseconds of work per chunk, and the most items in one. */
  readonly chunking: { readonly targetMillis: number; readonly maxItems: number }
}
