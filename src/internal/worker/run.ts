/**
 * One payload's run in the worker, and its outcome as it travels: what the
 * serve loop (server.ts) and batches (batch.ts) share, and the output that
 * the serve loop gives batches and streams (stream.ts).
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Task from "../../Task.ts"
import type { BinaryMode } from "../wire/binary.ts"
import { encodeDefect, Invalid, type TaskCodec } from "../wire/codec.ts"
import { ExitKind, type FromWorkerMessage } from "../wire/protocol.ts"

/**
 * Where the worker's answers go: the serve loop's own, which it hands to
 * batches and streams.
 *
 * @internal
 */
export interface Output {
  /** Queues one message for the parent; `binary` for the results of tasks declared with serialization "binary". */
  readonly send: (message: FromWorkerMessage, binary: BinaryMode) => void
  /** Writes what is queued now. */
  readonly flush: () => void
  /** Waits until everything written has left the process (used between batch parts). */
  readonly drained: Effect.Effect<void>
}

/** An outcome as it travels: `[kind, value]`. @internal */
export type EncodedExit = [kind: ExitKind, value?: unknown]

/**
 * Encodes an outcome with the task's codec: its success, its first typed
 * failure, its first defect, or its interruption.
 *
 * @internal
 */
export const encodeExit = (
  codec: TaskCodec | undefined,
  exit: Exit.Exit<unknown, unknown>,
  interruptRequested: boolean
): EncodedExit => {
  if (Exit.isSuccess(exit)) {
    const value = codec!.encodeSuccess(exit.value)
    return value instanceof Invalid ? [ExitKind.ResultInvalid, value.issue] : [ExitKind.Success, value]
  }
  const cause = exit.cause
  for (const reason of cause.reasons) {
    if (reason._tag === "Fail") {
      const value = codec!.encodeFailure(reason.error)
      return value instanceof Invalid ? [ExitKind.ResultInvalid, value.issue] : [ExitKind.Failure, value]
    }
  }
  for (const reason of cause.reasons) {
    if (reason._tag === "Die") return [ExitKind.Defect, encodeDefect(reason.defect)]
  }
  if (interruptRequested) return [ExitKind.Interrupted]
  return [ExitKind.Defect, encodeDefect(new Error("The task interrupted itself inside the worker"))]
}

/** Like {@link encodeExit}, but a payload that did not decode is reported as such. @internal */
export const payloadAwareExit = (codec: TaskCodec, exit: Exit.Exit<unknown, unknown>): EncodedExit => {
  if (Exit.isFailure(exit)) {
    const invalid = Cause.findErrorOption(exit.cause)
    if (invalid._tag === "Some" && invalid.value instanceof Invalid) {
      return [ExitKind.PayloadInvalid, invalid.value.issue]
    }
  }
  return encodeExit(codec, exit, false)
}

/** Runs one decoded payload. @internal */
export const runDecoded = (handler: Task.Handler.Any, payload: unknown): Effect.Effect<unknown, unknown> => {
  try {
    return handler.run(payload) as Effect.Effect<unknown, unknown>
  } catch (defect) {
    return Effect.die(defect)
  }
}

/** Runs one payload: decode, handle. Never fails: the outcome is in the Exit. @internal */
export const runHandler = (
  handler: Task.Handler.Any,
  codec: TaskCodec,
  payload: unknown
): Effect.Effect<unknown, unknown> => {
  const decoded = codec.decodePayload(payload)
  if (decoded instanceof Invalid) return Effect.fail(decoded)
  return runDecoded(handler, decoded)
}
