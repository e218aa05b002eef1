/**
 * A streaming task in the worker (RunStream): its items go to the parent as
 * they come, at most `window` ahead of what the parent has acknowledged
 * (Ack); the stream is paused, not buffered, until it has. Its end is the
 * task's Exit.
 *
 * The serve loop (server.ts) starts it, gives it its output, and hands it the
 * parent's Acks.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Stream from "effect/Stream"
import type * as Task from "../../Task.ts"
import { binaryMode } from "../wire/binary.ts"
import { Invalid, type TaskCodec } from "../wire/codec.ts"
import { ExitKind, Message } from "../wire/protocol.ts"
import type { Output } from "./run.ts"

/** What a stream reads and writes of its job. @internal */
export interface StreamJob {
  readonly id: number
  readonly tag: string
  readonly payload: unknown
  /** For a streaming task: how many more items it may send before the parent acknowledges some; -1 otherwise. */
  credits: number
  /** Resumes a stream waiting for credits. */
  wake: (() => void) | undefined
}

/** An item of a streaming task's output did not fit its success Schema. */
class ItemInvalid {
  readonly issue: string
  constructor(issue: string) {
    this.issue = issue
  }
}

/** The issue of a stream item that did not encode, if that is how the stream ended. */
const itemInvalid = (exit: Exit.Exit<unknown, unknown>): string | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const error = Cause.findErrorOption(exit.cause)
  return error._tag === "Some" && error.value instanceof ItemInvalid ? error.value.issue : undefined
}

/** Waits until the parent has acknowledged enough items for the stream to send more. */
const credit = (job: StreamJob): Effect.Effect<void> =>
  job.credits > 0 ? Effect.void : Effect.callback<void>((resume) => {
    job.wake = () => resume(Effect.void)
    return Effect.sync(() => {
      job.wake = undefined
    })
  })

/** The parent has acknowledged `n` more items of the stream: a stream waiting for credits goes on. @internal */
export const ack = (job: StreamJob, n: number): void => {
  job.credits += n
  const wake = job.wake
  job.wake = undefined
  wake?.()
}

/** `effect/Stream`, loaded by the first streaming task: workers that serve none never pay for it. */
let streamModulePromise: Promise<typeof Stream> | undefined
const streamModule = Effect.promise(() => (streamModulePromise ??= import("effect/Stream")))

/**
 * Runs a streaming task: decodes the payload, runs the handler's stream, and
 * sends its items as they come, chunk by chunk, encoded with the success
 * Schema. The stream is paused, not buffered, while `window` items are
 * waiting for the consumer: it pulls no more until the parent acknowledges
 * some. Its end is the job's Exit (see {@link sendEnd}).
 *
 * @internal
 */
export const runStream = (
  job: StreamJob,
  handler: Task.Handler.Any,
  codec: TaskCodec,
  output: Output
): Effect.Effect<void, unknown> =>
  Effect.flatMap(streamModule, (Stream) => runWith(Stream, job, handler, codec, output))

const runWith = (
  Stream: typeof import("effect/Stream"),
  job: StreamJob,
  handler: Task.Handler.Any,
  codec: TaskCodec,
  output: Output
): Effect.Effect<void, unknown> => {
  const decoded = codec.decodePayload(job.payload)
  if (decoded instanceof Invalid) return Effect.fail(decoded)
  let stream: Stream.Stream<unknown, unknown>
  try {
    stream = handler.run(decoded) as Stream.Stream<unknown, unknown>
  } catch (defect) {
    return Effect.die(defect)
  }
  if (!Stream.isStream(stream)) {
    return Effect.die(new Error(`the handler of streaming task "${job.tag}" did not return a Stream`))
  }
  const binary = binaryMode(handler.task)
  /** Encodes a chunk; should one item not fit, the items before it, and why. */
  const encode = (items: ReadonlyArray<unknown>): [Array<unknown>, ItemInvalid | undefined] => {
    const encoded = codec.encodeSuccesses(items)
    if (!(encoded instanceof Invalid)) return [encoded as Array<unknown>, undefined]
    const good: Array<unknown> = []
    for (const item of items) {
      const value = codec.encodeSuccess(item)
      if (value instanceof Invalid) return [good, new ItemInvalid(value.issue)]
      good.push(value)
    }
    return [good, new ItemInvalid(encoded.issue)]
  }
  const sendAll = (items: ReadonlyArray<unknown>): Effect.Effect<void, ItemInvalid> => {
    const [values, invalid] = encode(items)
    let at = 0
    const loop: Effect.Effect<void, ItemInvalid> = Effect.suspend(() => {
      while (at < values.length && job.credits > 0) {
        const n = Math.min(job.credits, values.length - at)
        job.credits -= n
        output.send(Message.items(job.id, at === 0 && n === values.length ? values : values.slice(at, at + n)), binary)
        at += n
      }
      // Written now: the stream may go on computing without yielding to the event loop.
      output.flush()
      if (at < values.length) return Effect.flatMap(credit(job), () => loop)
      return invalid === undefined ? Effect.void : Effect.fail(invalid)
    })
    return loop
  }
  // After each chunk the event loop runs: an Interrupt or Ack from the parent is read even while the
  // stream is made of CPU-bound steps that never wait.
  return Stream.runForEachArray(
    stream,
    (items) => Effect.flatMap(credit(job), () => Effect.andThen(sendAll(items), Effect.yieldNow))
  )
}

/**
 * Sends the Exit of a stream that ended by itself: a success (its items went
 * before), or an item that did not fit the success Schema. Returns false,
 * having sent nothing, for any other end: the serve loop answers it as it
 * answers any task.
 *
 * @internal
 */
export const sendEnd = (output: Output, id: number, exit: Exit.Exit<unknown, unknown>): boolean => {
  if (Exit.isSuccess(exit)) {
    output.send(Message.exit(id, ExitKind.Success, null), false)
    return true
  }
  const invalid = itemInvalid(exit)
  if (invalid === undefined) return false
  output.send(Message.exit(id, ExitKind.ResultInvalid, invalid), false)
  return true
}
