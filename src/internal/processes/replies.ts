/**
 * What a worker's reply means to its caller: a task's or an item's outcome,
 * still encoded, for the service to decode (service/codec.ts); a chunk's
 * parts, joined in order into its outcome; and what a crash under a chunk
 * leaves.
 *
 * @internal
 */
import * as Exit from "effect/Exit"
import { LimitExceeded, type PoolError, WorkerCrashed } from "../../PoolError.ts"
import { AllSucceeded, type ChunkTimer, type Conversion, type Outcome, type RawChunk } from "../service/backend.ts"
import { ExitKind, FromWorker } from "../wire/protocol.ts"
import { type Decode, type Entry, isPoolErrorReply, type Reply } from "./entry.ts"

const replyDecoders = new WeakMap<Conversion["decode"], Decode>()

/**
 * A unary task's reply as its caller's `Exit`: the worker's outcome decoded
 * by `decode`, or the pool error that ended it. Built once per decoder.
 *
 * @internal
 */
export const replyDecoder = (decode: Conversion["decode"]): Decode => {
  let decoder = replyDecoders.get(decode)
  if (decoder === undefined) {
    decoder = (reply) =>
      isPoolErrorReply(reply)
        ? Exit.fail(reply)
        : reply[0] === FromWorker.Exit
        ? decode(reply[2], reply[3])
        : Exit.die(new Error("effect-process-pool: a batch's answer to a single task"))
    replyDecoders.set(decode, decoder)
  }
  return decoder
}

/**
 * A streaming task's end as its caller's `Exit`: a success carries no value
 * (its items came before); any other outcome fails the stream.
 *
 * @internal
 */
export const streamEndOf: Decode = (reply) =>
  isPoolErrorReply(reply)
    ? Exit.fail(reply)
    : reply[0] === FromWorker.Exit && reply[2] === ExitKind.Success
    ? Exit.void
    : reply[0] === FromWorker.Exit
    ? Exit.fail([reply[2], reply[3]] satisfies Outcome)
    : Exit.die(new Error("effect-process-pool: a batch's answer to a streaming task"))

/** Every item's outcome of a chunk's. @internal */
export const toOutcomes = (chunk: RawChunk): Array<Outcome | PoolError> =>
  chunk instanceof AllSucceeded
    ? chunk.values.map((value): Outcome => [ExitKind.Success, value])
    : chunk

/** The outcomes of a chunk's parts, in order, as one; copied once, into an array of the right length. */
const joinParts = (parts: ReadonlyArray<RawChunk>): RawChunk => {
  if (parts.length === 1) return parts[0]
  let total = 0
  let values = true
  for (const part of parts) {
    total += part instanceof AllSucceeded ? part.values.length : part.length
    if (!(part instanceof AllSucceeded)) values = false
  }
  const joined = new Array(total)
  let at = 0
  for (const part of parts) {
    if (part instanceof AllSucceeded) {
      const items = part.values
      for (let i = 0; i < items.length; i++) joined[at++] = values ? items[i] : [ExitKind.Success, items[i]]
    } else {
      for (let i = 0; i < part.length; i++) joined[at++] = part[i]
    }
  }
  return values ? new AllSucceeded(joined) : joined
}

/**
 * A chunk's worker died: the outcomes of its first `received` items came back before.
 *
 * @internal
 */
export class Crashed {
  readonly results: RawChunk
  readonly received: number
  /** How many items after those the worker may have run. */
  readonly window: number
  /** Why: the worker died, or was stopped past a limit of the pool's (then nothing runs again in its place). */
  readonly error: WorkerCrashed | LimitExceeded
  constructor(results: RawChunk, received: number, window: number, error: WorkerCrashed | LimitExceeded) {
    this.results = results
    this.received = received
    this.window = window
    this.error = error
  }
}

/**
 * The replies of one attempt at a chunk of `size` items, sent as a batch in
 * parts of `every` items: the parts as they come back ahead of the answer,
 * then the answer, joined in order into the chunk's outcome. An outcome of
 * the chunk as a whole (not served, interrupted) is every item's, a pool
 * error that ended it fails it, and a crash keeps what came back
 * (`Crashed`). The time the chunk took goes to `timer`.
 *
 * @internal
 */
export class ChunkReplies {
  private readonly size: number
  private readonly every: number
  private readonly timer: ChunkTimer
  private readonly started = performance.now()
  private readonly parts: Array<RawChunk> = []
  private entry: Entry | undefined = undefined

  constructor(size: number, every: number, timer: ChunkTimer) {
    this.size = size
    this.every = every
    this.timer = timer
  }

  /** Takes the chunk's entry, once it is built: its parts come here. */
  readonly attach = (entry: Entry): void => {
    this.entry = entry
    // Until a part says otherwise, the items a crash would leave in doubt: see `recover` in client.ts.
    entry.window = this.every
    entry.onPart = (exits, items) => {
      this.timer.partSize(entry.window)
      this.parts.push(exits ? items as Array<Outcome> : new AllSucceeded(items))
    }
  }

  /** The entry's reply decoder: the chunk's outcome, or `Crashed`. */
  readonly decode: Decode = (reply: Reply) => {
    if (isPoolErrorReply(reply)) {
      // The worker died while it ran this chunk: what finished is kept, and what never started runs again. A
      // chunk refused before it was sent (see `Admit`) fails as a whole.
      const entry = this.entry
      return (reply instanceof WorkerCrashed || reply instanceof LimitExceeded) && entry !== undefined &&
          entry.sentAt > 0
        ? Exit.succeed(new Crashed(joinParts(this.parts), entry.received, entry.window || this.every, reply))
        : Exit.fail(reply)
    }
    switch (reply[0]) {
      case FromWorker.BatchValues:
        return this.ended(new AllSucceeded(reply[2]))
      case FromWorker.BatchExit:
        return this.ended(reply[2] as Array<Outcome>)
      default: {
        // The chunk as a whole: not served, interrupted.
        const outcome: Outcome = [reply[2], reply[3]]
        return Exit.succeed(Array.from({ length: this.size }, () => outcome))
      }
    }
  }

  private ended(last: RawChunk): Exit.Exit<RawChunk> {
    this.timer.record(this.size, performance.now() - this.started)
    this.parts.push(last)
    return Exit.succeed(joinParts(this.parts))
  }
}
