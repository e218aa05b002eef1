/**
 * The task's Schemas at the caller, for every backend: payloads encoded
 * before anything is sent, outcomes decoded into the caller's `Exit` once
 * they are back. A backend only carries what this module encodes, and gives
 * back what the worker encoded.
 *
 * @internal
 */
import * as Exit from "effect/Exit"
import { type PoolError, SerializationError, TaskNotServed } from "../../PoolError.ts"
import type * as Task from "../../Task.ts"
import { codecFor, decodeDefect, Invalid, type TaskCodec } from "../wire/codec.ts"
import { ExitKind } from "../wire/protocol.ts"
import { AllSucceeded, type Conversion, type Outcome, type RawChunk } from "./backend.ts"

/** A chunk's decoded outcome: every item's `Exit`, or, when all succeeded, their values. @internal */
export type ChunkResult = Array<Exit.Exit<any, any>> | AllSucceeded

/** Every item's `Exit` of a chunk's outcome. @internal */
export const toExits = (result: ChunkResult): Array<Exit.Exit<any, any>> =>
  result instanceof AllSucceeded ? result.values.map(Exit.succeed) : result

const payloadInvalid = (tag: string, issue: string) =>
  new SerializationError({ task: tag, direction: "payload", issue, side: "caller" })

const resultInvalid = (tag: string, issue: string, side: "caller" | "worker") =>
  new SerializationError({ task: tag, direction: "result", issue, side })

/**
 * A payload in the form that crosses the boundary, or the SerializationError
 * that says why it does not fit its Schema.
 *
 * @internal
 */
export const encodePayload = (task: Task.Task.Any, payload: unknown): unknown => conversionOf(task).encode(payload)

/**
 * A chunk's payloads, encoded in one codec call: an array, or, when one does
 * not fit, each item's encoded form or its own SerializationError.
 *
 * @internal
 */
export const encodePayloads = (
  task: Task.Task.Any,
  payloads: ReadonlyArray<unknown>
): { readonly all: ReadonlyArray<unknown> } | { readonly each: ReadonlyArray<unknown> } => {
  const encoded = codecFor(task).encodePayloads(payloads)
  return encoded instanceof Invalid
    ? { each: payloads.map((payload) => encodePayload(task, payload)) }
    : { all: encoded as ReadonlyArray<unknown> }
}

/** One outcome decoded with a task's codec. */
const decode = (codec: TaskCodec, tag: string, kind: number, value: unknown): Exit.Exit<any, any> => {
  switch (kind) {
    case ExitKind.Success: {
      const decoded = codec.decodeSuccess(value)
      return decoded instanceof Invalid ? Exit.fail(resultInvalid(tag, decoded.issue, "caller")) : Exit.succeed(decoded)
    }
    case ExitKind.Failure: {
      const decoded = codec.decodeFailure(value)
      return decoded instanceof Invalid ? Exit.fail(resultInvalid(tag, decoded.issue, "caller")) : Exit.fail(decoded)
    }
    case ExitKind.Defect:
      return Exit.die(decodeDefect(value))
    case ExitKind.Interrupted:
      return Exit.interrupt()
    case ExitKind.PayloadInvalid:
      return Exit.fail(
        new SerializationError({ task: tag, direction: "payload", issue: String(value), side: "worker" })
      )
    case ExitKind.ResultInvalid:
      return Exit.fail(resultInvalid(tag, String(value), "worker"))
    case ExitKind.NotServed:
      return Exit.fail(new TaskNotServed({ task: tag }))
    default:
      return Exit.die(new Error(`effect-process-pool: unknown outcome kind ${kind} for task "${tag}"`))
  }
}

/** Whether a backend's answer is a worker's outcome rather than a pool error. @internal */
export const isOutcome = (u: Outcome | PoolError): u is Outcome => Array.isArray(u)

/**
 * Decodes one task's outcomes into the caller's `Exit`: a typed failure
 * keeps its class, a defect its message and the worker's stack.
 *
 * @internal
 */
export type Decoder = Conversion["decode"]

const conversions = new WeakMap<Task.Task.Any, Conversion>()

/**
 * How the service converts a task's values at a backend's edge: built once per
 * task, shared by all its calls.
 *
 * @internal
 */
export const conversionOf = (task: Task.Task.Any): Conversion => {
  let conversion = conversions.get(task)
  if (conversion === undefined) {
    const codec = codecFor(task)
    const tag = task._tag
    conversion = {
      encode: (payload) => {
        const encoded = codec.encodePayload(payload)
        return encoded instanceof Invalid ? payloadInvalid(tag, encoded.issue) : encoded
      },
      decode: (kind, value) => decode(codec, tag, kind, value)
    }
    conversions.set(task, conversion)
  }
  return conversion
}

/**
 * The conversion that leaves values as they are: for payloads already
 * encoded (a chunk's item run alone, a runner's message), and outcomes to be
 * forwarded still encoded.
 *
 * @internal
 */
export const passThrough: Conversion = {
  encode: (payload) => payload,
  decode: (kind, value) => Exit.succeed([kind, value] satisfies Outcome)
}

/** The decoder of a task's outcomes. @internal */
export const decoderOf = (task: Task.Task.Any): Decoder => conversionOf(task).decode

/** An item's outcome or the pool error that ended it, decoded. */
const decodeItem = (decoder: Decoder, item: Outcome | PoolError): Exit.Exit<unknown, unknown> =>
  isOutcome(item) ? decoder(item[0], item[1]) : Exit.fail(item)

/**
 * A chunk's outcome decoded: every item's success in one codec call, or each
 * item alone, so that only the one that does not decode fails.
 *
 * @internal
 */
export const decodeChunk = (task: Task.Task.Any, raw: RawChunk): ChunkResult => {
  const decoder = decoderOf(task)
  if (!(raw instanceof AllSucceeded)) return raw.map((item) => decodeItem(decoder, item))
  const values = codecFor(task).decodeSuccesses(raw.values)
  return values instanceof Invalid
    ? raw.values.map((value) => decoder(ExitKind.Success, value))
    : new AllSucceeded(values as ReadonlyArray<unknown>)
}

/**
 * A stream's items decoded in one codec call. When one does not decode, the
 * items before it are kept, and the SerializationError says why it failed.
 *
 * @internal
 */
export const decodeItems = (
  task: Task.Task.Any,
  items: ReadonlyArray<unknown>
): { readonly values: ReadonlyArray<unknown>; readonly error?: SerializationError } => {
  const codec = codecFor(task)
  const decoded = codec.decodeSuccesses(items)
  if (!(decoded instanceof Invalid)) return { values: decoded as ReadonlyArray<unknown> }
  const values: Array<unknown> = []
  for (const item of items) {
    const value = codec.decodeSuccess(item)
    if (value instanceof Invalid) return { values, error: resultInvalid(task._tag, value.issue, "caller") }
    values.push(value)
  }
  return { values }
}
