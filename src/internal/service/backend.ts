/**
 * What a backend gives the service: the few primitives that differ between
 * local processes, the in-memory layer and the cluster. A backend carries
 * values as they cross a boundary: payloads encoded by the service, outcomes
 * still encoded, as the worker made them; a unary call applies the service's
 * conversion (`Conversion`) itself, where values cross. Everything a caller sees
 * on top of them (the checks of options, payloads encoded and results
 * decoded with the task's Schemas, `map`, `mapExits` and `stream` with lazy
 * input, ordering and chunk sizes, retries, `stats` and `statsStream`) is
 * built once, in service.ts.
 *
 * @internal
 */
import type * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import type * as Stream from "effect/Stream"
import type { PoolError } from "../../PoolError.ts"
import type { Stats } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"
import type { ExitKind } from "../wire/protocol.ts"

/**
 * A task's or an item's outcome as its worker encoded it: its `ExitKind`, and
 * the encoded success, failure or defect, or the issue, when it has a value.
 *
 * @internal
 */
export type Outcome = readonly [kind: ExitKind, value?: unknown]

/** A chunk's outcome when every item succeeded: their values alone. @internal */
export class AllSucceeded<A = unknown> {
  readonly values: ReadonlyArray<A>
  constructor(values: ReadonlyArray<A>) {
    this.values = values
  }
}

/**
 * A chunk's outcome, still encoded: every item's encoded success when all
 * succeeded, or else each item's `Outcome`, or the pool error that ended it.
 *
 * @internal
 */
export type RawChunk = AllSucceeded | Array<Outcome | PoolError>

/** Learns how long items take, to size the next chunks: see `Chunker` in mapping.ts. @internal */
export interface ChunkTimer {
  record(items: number, millis: number): void
  /** How many items the first part of a chunk holds: about half a millisecond of work, 1 until measured. */
  firstPartItems(): number
  /** What a worker said its next part would hold: its own measure of half a millisecond of work. */
  partSize(items: number): void
}

/**
 * A call's options as a backend takes them: checked, with the timeout in
 * milliseconds (0 for none). Each backend enforces the timeout where it can
 * stop the work.
 *
 * @internal
 */
export interface Call {
  readonly timeout: number
  /** For a streaming task: items the worker may produce ahead of the consumer; the backend's default if unset. */
  readonly window: number | undefined
  /** Through the cluster: where the call goes. */
  readonly key: string | undefined
  /** Asked at the moment the task would start: a pool error when it must not (see `Admit`). */
  readonly admit?: Admit | undefined
}

/**
 * Whether a task may still start, asked at the moment it would: `undefined`
 * when it may, or the pool error it ends with instead. A runner refuses the
 * work it took before it lost, or could no longer prove it held, the shard
 * that sent it.
 *
 * @internal
 */
export type Admit = () => PoolError | undefined

/**
 * How the service converts one task's values at a backend's edge, for the
 * backend to apply where a value crosses: on a unary call's hot path, that
 * spares a step of its own on each side.
 *
 * @internal
 */
export interface Conversion {
  /** A payload in the form that crosses, or the `SerializationError` that stops it. */
  readonly encode: (payload: unknown) => unknown
  /** An outcome, as its caller receives it. */
  readonly decode: (kind: ExitKind, value: unknown) => Exit.Exit<unknown, unknown>
}

/**
 * One backend of the `ProcessPool` service. Each primitive makes one attempt:
 * the service retries idempotent tasks.
 *
 * @internal
 */
export interface Backend {
  /**
   * Runs one unary task: its outcome decoded by `convert.decode` where it
   * arrives, or a pool error. The payload is the caller's: the backend
   * encodes it with `convert.encode` each time the effect runs, and fails
   * with the SerializationError that gives back.
   */
  readonly call: (
    task: Task.Task.Any,
    payload: unknown,
    call: Call,
    convert: Conversion
  ) => Effect.Effect<unknown, unknown>
  /**
   * Runs one streaming task: its encoded items; a stream that ends other than
   * by success fails with its outcome. Nothing is sent until it is pulled.
   */
  readonly open: (task: Task.Task.Any, payload: unknown, call: Call) => Stream.Stream<unknown, Outcome | PoolError>
  /**
   * Runs one chunk of a `map`: each item's outcome in the result; a pool
   * error that ended the whole chunk fails the effect. `call` is the map's.
   */
  readonly chunk: (
    task: Task.Task.Unary,
    payloads: ReadonlyArray<unknown>,
    timer: ChunkTimer,
    call: Pick<Call, "key" | "admit">
  ) => Effect.Effect<RawChunk, PoolError>
  /** A snapshot of the backend. */
  readonly stats: Effect.Effect<Stats>
  /** How many chunks of one `map` are in flight at once, unless the call says. */
  readonly concurrency: number
  /** What `chunkSize: "auto"` aims at: milliseconds of work per chunk, and the most items in one. */
  readonly chunking: { readonly targetMillis: number; readonly maxItems: number }
  /**
   * Told of `items` payloads of a chunk or a stream that the service refused
   * because they did not encode, so that the backend's count of tasks by
   * outcome stays true. A call's payload is encoded by the backend itself.
   */
  readonly unsent?: ((task: string, items: number) => void) | undefined
}
