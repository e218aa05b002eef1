/**
 * The `ProcessPool` service, built once over any backend: the checks of a
 * call's options, payloads encoded and outcomes decoded with the task's
 * Schemas (codec.ts; a unary call's backend applies the conversion where
 * values cross), `submit` for unary and streaming tasks, the retries of
 * idempotent tasks (retry.ts), the map engines (mapping.ts), `stats` and
 * `statsStream`. A backend gives only the primitives in backend.ts, each
 * making one attempt with values as they cross its boundary.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Pull from "effect/Pull"
import * as Stream from "effect/Stream"
import { type PoolError, SerializationError } from "../../PoolError.ts"
import type { Service, Stats, SubmitArgs, SubmitOptions, Submitted } from "../../ProcessPool.ts"
import type * as Task from "../../Task.ts"
import { checkSubmit, millis } from "../options.ts"
import { AllSucceeded, type Backend, type Call, type Outcome } from "./backend.ts"
import {
  type ChunkResult,
  conversionOf,
  decodeChunk,
  decodeItems,
  decoderOf,
  encodePayload,
  encodePayloads,
  isOutcome
} from "./codec.ts"
import { type Chunks, makeMapping } from "./mapping.ts"
import { withRetries } from "./retry.ts"

const noOptions: Call = { timeout: 0, window: undefined, key: undefined }

/** A call's checked options as a backend takes them: the timeout read once, in milliseconds (0 for none). */
const callOf = (options: SubmitOptions | undefined): Call =>
  options === undefined ? noOptions : {
    timeout: options.timeout === undefined ? 0 : millis(options.timeout, 0),
    window: options.window,
    key: options.key
  }

/**
 * The service over a backend whose primitives make one attempt each.
 *
 * @internal
 */
export const makeService = (once: Backend): Service => {
  const backend = withRetries(once)
  const unsent = once.unsent

  /** A unary task: the backend encodes its payload and decodes its outcome with the task's conversion. */
  const call = (task: Task.Task.Any, payload: unknown, options: SubmitOptions | undefined) =>
    backend.call(task, payload, callOf(options), conversionOf(task))

  /** A streaming task: its items decoded as they arrive, and its end decoded when it is not a success. */
  const open = (task: Task.Task.Any, payload: unknown, options: SubmitOptions | undefined) =>
    Stream.suspend(() => {
      const encoded = encodePayload(task, payload)
      if (encoded instanceof SerializationError) {
        unsent?.(task._tag, 1)
        return Stream.fail(encoded)
      }
      return decodeStream(task, backend.open(task, encoded, callOf(options)))
    })

  /**
   * A chunk of a map: its payloads encoded in one call, the ones that do not
   * fit refused item by item, the rest sent, and every outcome decoded.
   */
  const chunk: Chunks["chunk"] = (task, payloads, timer, call) =>
    Effect.suspend(() => {
      const encoded = encodePayloads(task, payloads)
      if ("all" in encoded) {
        return Effect.map(backend.chunk(task, encoded.all, timer, call), (raw) => decodeChunk(task, raw))
      }
      const good = encoded.each.filter((item) => !(item instanceof SerializationError))
      unsent?.(task._tag, payloads.length - good.length)
      const refusedOnly = encoded.each.map((item) => item instanceof SerializationError ? Exit.fail(item) : undefined)
      if (good.length === 0) return Effect.succeed(refusedOnly as Array<Exit.Exit<never, SerializationError>>)
      return Effect.map(backend.chunk(task, good, timer, call), (raw): ChunkResult => {
        const sent = decodeChunk(task, raw)
        let at = 0
        return refusedOnly.map((exit) =>
          exit ?? (sent instanceof AllSucceeded ? Exit.succeed(sent.values[at++]) : sent[at++])
        )
      })
    })

  const submit: Service["submit"] = <T extends Task.Task.Any>(task: T, ...[payload, options]: SubmitArgs<T>) => {
    const invalid = options === undefined ? undefined : checkSubmit(options)
    if (task.stream) {
      return (invalid === undefined ? open(task, payload, options) : Stream.fail(invalid)) as Submitted<T>
    }
    return (invalid === undefined ? call(task, payload, options) : Effect.fail(invalid)) as Submitted<T>
  }
  const mapping = makeMapping({ chunk, concurrency: backend.concurrency, chunking: backend.chunking })
  return { submit, ...mapping, stats: backend.stats, statsStream: statsEvery(backend.stats) }
}

/**
 * A backend's stream of encoded items decoded: each batch of items in one
 * codec call, and an end other than success into the caller's failure.
 * Should an item not decode, the ones before it are delivered, then the
 * stream fails, and its scope stops the worker's stream.
 */
const decodeStream = (
  task: Task.Task.Any,
  raw: Stream.Stream<unknown, Outcome | PoolError>
): Stream.Stream<unknown, unknown> =>
  Stream.transformPull(raw, (pull) => {
    const decoder = decoderOf(task)
    let failed: SerializationError | undefined
    const next: Pull.Pull<readonly [unknown, ...Array<unknown>], unknown> = Effect.suspend(() => {
      if (failed !== undefined) return Effect.fail(failed)
      return pull.pipe(
        // A stream's end is an error only when it is not a success: it decodes to a failure.
        Effect.catch((error) =>
          Cause.isDone(error) || !isOutcome(error)
            ? Effect.fail(error)
            : decoder(error[0], error[1]) as Exit.Exit<never, unknown>
        ),
        Effect.flatMap((items) => {
          const { error, values } = decodeItems(task, items)
          if (error === undefined) return Effect.succeed(values as readonly [unknown, ...Array<unknown>])
          if (values.length === 0) return Effect.fail(error)
          failed = error
          return Effect.succeed(values as readonly [unknown, ...Array<unknown>])
        })
      )
    })
    return Effect.succeed(next)
  })

/**
 * `statsStream` over a backend's `stats`: one snapshot at once, then one
 * every `interval`, up to the one that finds the pool closed.
 */
const statsEvery = (stats: Effect.Effect<Stats>) => (interval: Duration.Input): Stream.Stream<Stats> =>
  Stream.tick(interval).pipe(
    Stream.mapEffect(() => stats),
    Stream.takeUntil((snapshot) => snapshot.state === "closed")
  )
