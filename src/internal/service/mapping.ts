/**
 * The engines of `map`, `mapExits` and `stream`: inputs pulled lazily in
 * chunks, sized by measuring how long items take, a bounded number in flight.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Stream from "effect/Stream"
import type { PoolError } from "../../PoolError.ts"
import type { Inputs, MapOptions, Service } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"
import { checkMap } from "../options.ts"
import { AllSucceeded, type Backend, type Call, type ChunkTimer } from "./backend.ts"
import { type ChunkResult, toExits } from "./codec.ts"

/**
 * What the map engines run on: a chunk's decoded outcome, and the backend's
 * concurrency and aim for chunk sizes.
 *
 * @internal
 */
export interface Chunks extends Pick<Backend, "concurrency" | "chunking"> {
  /** One chunk: each item's `Exit`; a pool error that ended the whole chunk fails the effect. */
  readonly chunk: (
    task: Task.Task.Unary,
    payloads: ReadonlyArray<unknown>,
    timer: ChunkTimer,
    call: Pick<Call, "key">
  ) => Effect.Effect<ChunkResult, PoolError>
}

/**
 * Chooses items per message. A fixed size is used as given. `"auto"` starts at
 * one item and adapts to the measured time per item, aiming at chunks of the
 * backend's `targetMillis` (about 5 ms for local workers): long enough to
 * amortise the round trip, short enough to keep workers evenly loaded to the
 * end. It grows at most 4x and shrinks at most 2x a step.
 *
 * @internal
 */
export class Chunker {
  size: number
  private readonly fixed: boolean
  private readonly aim: Backend["chunking"]
  /** Milliseconds per item, as last measured over a whole chunk; NaN until then. */
  private perItem = Number.NaN
  /**
   * Items in half a millisecond of work, as a worker last measured it (a
   * chunk's wall time includes its wait in the queue; a worker's does not);
   * 0 until a worker has said.
   */
  private part = 0
  /** The call's `key`: where its chunks go, through the cluster. */
  readonly call: { readonly key: string | undefined }
  constructor(
    chunkSize: number | "auto" | undefined,
    aim: Backend["chunking"],
    key?: string | undefined
  ) {
    this.aim = aim
    this.call = { key }
    this.fixed = typeof chunkSize === "number"
    this.size = typeof chunkSize === "number" ? Math.max(1, Math.floor(chunkSize)) : 1
  }
  record(items: number, millis: number): void {
    this.perItem = millis / items
    if (this.fixed || items < this.size) return
    const desired = Math.max(
      1,
      Math.min(this.aim.maxItems, Math.floor(this.aim.targetMillis / Math.max(millis / items, 1e-4)))
    )
    this.size = Math.max(this.size >> 1, Math.min(this.size * 4, desired), 1)
  }
  firstPartItems(): number {
    if (this.part > 0) return this.part
    return Number.isNaN(this.perItem) ? 1 : Math.max(1, Math.floor(0.5 / Math.max(this.perItem, 1e-5)))
  }
  partSize(items: number): void {
    this.part = items
  }
}

function* chunksOf<A>(inputs: Iterable<A>, chunker: Chunker): Generator<Array<A>> {
  if (Array.isArray(inputs)) {
    for (let i = 0; i < inputs.length;) {
      const end = Math.min(inputs.length, i + chunker.size)
      yield inputs.slice(i, end)
      i = end
    }
    return
  }
  let chunk: Array<A> = []
  for (const item of inputs) {
    chunk.push(item)
    if (chunk.length >= chunker.size) {
      yield chunk
      chunk = []
    }
  }
  if (chunk.length > 0) yield chunk
}

/** `map`, `mapExits` and `stream`, as the service has them. @internal */
export type Mapping = Pick<Service, "map" | "mapExits" | "stream">

/**
 * `map`, `mapExits` and `stream` over chunks: the inputs read lazily, cut
 * into chunks, `concurrency` of them in flight.
 *
 * @internal
 */
export const makeMapping = (backend: Chunks): Mapping => {
  const submitChunk = <T extends Task.Task.Unary>(task: T, chunk: ReadonlyArray<any>, chunker: Chunker) =>
    backend.chunk(task, chunk, chunker, chunker.call)
  /** A chunk's values; the first item that failed fails it. Typed by the service's signatures, which use it. */
  const chunkValues = <T extends Task.Task.Unary>(
    task: T,
    chunk: ReadonlyArray<any>,
    chunker: Chunker
  ): Effect.Effect<ReadonlyArray<any>, any> =>
    Effect.flatMap(submitChunk(task, chunk, chunker), (result) => {
      if (result instanceof AllSucceeded) return Effect.succeed(result.values)
      const values = new Array(result.length)
      for (let i = 0; i < result.length; i++) {
        const exit = result[i]
        if (Exit.isFailure(exit)) return exit
        values[i] = exit.value
      }
      return Effect.succeed(values)
    })

  /**
   * The engine of `stream`: pulls the inputs lazily in
   * chunks sized by the chunker, and runs `concurrency` chunks at a time.
   */
  const runChunks = <A, B, E, E2, R>(
    inputs: Inputs<A, E, R>,
    options: MapOptions | undefined,
    run: (chunk: ReadonlyArray<A>, chunker: Chunker) => Effect.Effect<ReadonlyArray<B>, E2>
  ): Stream.Stream<B, E | E2, R> =>
    Stream.suspend(() => {
      const chunker = new Chunker(options?.chunkSize, backend.chunking, options?.key)
      const chunks: Stream.Stream<ReadonlyArray<A>, E, R> = Stream.isStream(inputs)
        ? Stream.flatMap(
          Stream.chunks(inputs),
          (natural) => Stream.fromIterable(chunksOf(natural, chunker), { chunkSize: 1 })
        )
        : Stream.fromIterable(chunksOf(inputs, chunker), { chunkSize: 1 })
      return chunks.pipe(
        // Each chunk's Exit, so that in order a later chunk's failure waits for the results before it.
        Stream.mapEffect((chunk) => Effect.exit(run(chunk, chunker)), {
          concurrency: options?.concurrency ?? backend.concurrency,
          unordered: options?.ordered === false
        }),
        Stream.mapEffect((exit) => exit),
        Stream.flattenIterable
      )
    })

  const stream: Service["stream"] = (task, inputs, options) => {
    const invalid = checkMap(options)
    if (invalid !== undefined) return Stream.fail(invalid)
    const results = runChunks(inputs, options, (chunk, chunker) => chunkValues(task, chunk, chunker))
    return options?.bufferSize === undefined ? results : Stream.buffer(results, { capacity: options.bufferSize })
  }

  /**
   * The engine of `map` and `mapExits`: `concurrency` fibers pull chunks from
   * one lazy iterator over the inputs, so chunk sizes adapt as results come in
   * and memory stays bounded, and each chunk's results land at its index. When
   * one fiber fails, `Effect.forEach` interrupts the others.
   */
  const collectChunks = <A, B, E>(
    inputs: Iterable<A>,
    options: MapOptions | undefined,
    run: (chunk: ReadonlyArray<A>, chunker: Chunker) => Effect.Effect<ReadonlyArray<B>, E>
  ): Effect.Effect<Array<B>, E> =>
    Effect.suspend(() => {
      const chunker = new Chunker(options?.chunkSize, backend.chunking, options?.key)
      const chunks = chunksOf(inputs, chunker)
      const ordered = options?.ordered !== false
      // An array's results go straight to their place in the output; other inputs are collected by chunk.
      const output: Array<B> | undefined = ordered && Array.isArray(inputs) ? new Array(inputs.length) : undefined
      const results: Array<ReadonlyArray<B>> = []
      let next = 0
      let consumed = 0
      const loop: Effect.Effect<void, E> = Effect.suspend(() => {
        const item = chunks.next()
        if (item.done === true) return Effect.void
        const at = next++
        const start = consumed
        consumed += item.value.length
        return Effect.flatMap(run(item.value, chunker), (values) => {
          if (output !== undefined) {
            for (let i = 0; i < values.length; i++) output[start + i] = values[i]
          } else if (ordered) results[at] = values
          else results.push(values)
          return loop
        })
      })
      const fibers = Math.max(1, options?.concurrency ?? backend.concurrency)
      return Effect.map(
        Effect.forEach(Array.from({ length: fibers }, () => loop), (fiber) => fiber, {
          concurrency: "unbounded",
          discard: true
        }),
        () => output ?? results.flat() as Array<B>
      )
    })

  const map: Service["map"] = (task, inputs, options) => {
    const invalid = checkMap(options)
    if (invalid !== undefined) return Effect.fail(invalid)
    return collectChunks(inputs, options, (chunk, chunker) => chunkValues(task, chunk, chunker))
  }

  const mapExits: Service["mapExits"] = (task, inputs, options) => {
    const invalid = checkMap(options)
    if (invalid !== undefined) return Effect.fail(invalid)
    return collectChunks(inputs, options, (chunk, chunker) =>
      Effect.match(submitChunk(task, chunk, chunker), {
        onFailure: (error) => chunk.map(() => Exit.fail(error)),
        onSuccess: toExits
      }))
  }

  return { map, mapExits, stream }
}
