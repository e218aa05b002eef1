/**
 * A batch in the worker (RunBatch): its items run in order, in one fiber, and
 * the results so far go to the parent as a BatchPart about every
 * `partBudget` ms of work, then the rest as BatchValues or BatchExit.
 *
 * The serve loop (server.ts) starts it, and gives it its output.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Task from "../../Task.ts"
import { type BinaryMode, binaryMode } from "../wire/binary.ts"
import { Invalid, type TaskCodec } from "../wire/codec.ts"
import { maxParts, Message } from "../wire/protocol.ts"
import { type EncodedExit, type Output, payloadAwareExit, runDecoded, runHandler } from "./run.ts"

/** What a batch reads and writes of its job. @internal */
export interface BatchJob {
  readonly id: number
  /**
   * After this many items, their results are written before the next item
   * starts (0 for never). Each part then says how many items the next one
   * holds at most, sized to about `partBudget` ms of work.
   */
  every: number
}

/**
 * The outcome of a batch: every item's `[kind, value]`, or, when all
 * succeeded, their encoded values alone.
 *
 * @internal
 */
export type BatchOutcome = Array<EncodedExit> | { readonly values: Array<unknown> }

/**
 * About how many milliseconds of work a batch part holds. A part costs a write
 * and a read; should the worker die, the items of its current part are the
 * ones whose fate is unknown.
 */
const partBudget = 0.5

/**
 * Runs the items of a batch one after another in one fiber. Payloads are
 * decoded, and successes encoded, a whole chunk per codec call; the item by
 * item path is taken only to report which items failed.
 *
 * @internal
 */
export const runBatch = (
  job: BatchJob,
  handler: Task.Handler.Any,
  codec: TaskCodec,
  payloads: ReadonlyArray<unknown>,
  output: Output
): Effect.Effect<BatchOutcome> =>
  Effect.suspend(() => {
    const decoded = codec.decodePayloads(payloads)
    const valid = !(decoded instanceof Invalid)
    const binary = binaryMode(handler.task)
    // The values while every item of the current part succeeds; every item's Exit from the first one that does not.
    let values: Array<unknown> = []
    let exits: Array<Exit.Exit<unknown, unknown>> | undefined
    let i = 0
    // Where the current part began: its items' results have not been written yet.
    let partFrom = 0
    let partStarted = performance.now()
    const record = (exit: Exit.Exit<unknown, unknown>): void => {
      if (exits === undefined) {
        if (Exit.isSuccess(exit)) return void values.push(exit.value)
        exits = values.map((value) => Exit.succeed(value))
      }
      exits.push(exit)
    }
    /** The outcome of the current part, encoded; the next part starts empty. */
    const takePart = (): BatchOutcome => {
      let outcome: BatchOutcome | undefined
      if (exits === undefined) {
        const encoded = codec.encodeSuccesses(values)
        if (!(encoded instanceof Invalid)) outcome = { values: encoded as Array<unknown> }
      }
      outcome ??= (exits ?? values.map((value) => Exit.succeed(value))).map((exit) => payloadAwareExit(codec, exit))
      values = []
      exits = undefined
      partFrom = i
      partStarted = performance.now()
      return outcome
    }
    const step: Effect.Effect<BatchOutcome> = Effect.suspend(() => {
      while (i < payloads.length) {
        if (job.every > 0 && i - partFrom >= job.every) {
          // The results so far reach the pipe before the next item starts: should this process die during
          // the next part, the parent knows which items finished, which may have run, and which never started.
          const perItem = (performance.now() - partStarted) / (i - partFrom)
          job.every = Math.max(
            1,
            Math.ceil(payloads.length / maxParts),
            Math.min(65_536, Math.floor(partBudget / Math.max(perItem, 1e-5)))
          )
          const part = takePart()
          output.send(
            Array.isArray(part)
              ? Message.batchPart(job.id, 1, part, job.every)
              : Message.batchPart(job.id, 0, part.values, job.every),
            binary
          )
          output.flush()
          return Effect.flatMap(output.drained, () => step)
        }
        const index = i++
        const run = valid
          ? runDecoded(handler, (decoded as Array<unknown>)[index])
          : runHandler(handler, codec, payloads[index])
        // A handler that answers with a ready value (`Effect.succeed`, `Effect.fail`) needs no fiber step.
        if (Exit.isExit(run)) {
          record(run)
          continue
        }
        return Effect.flatMap(Effect.exit(run), (exit) => {
          record(exit)
          return step
        })
      }
      return Effect.succeed(takePart())
    })
    return step
  })

/**
 * Sends the last answer of a batch that ran to its end: the items after its
 * last part, as BatchValues when all succeeded, or else as BatchExit.
 *
 * @internal
 */
export const sendOutcome = (output: Output, id: number, outcome: BatchOutcome, binary: BinaryMode): void => {
  if (Array.isArray(outcome)) output.send(Message.batchExit(id, outcome), binary)
  else output.send(Message.batchValues(id, outcome.values), binary)
}
