/**
 * What a worker's reply means to its caller: a task's or an item's outcome,
 * decoded with the Task's Schemas into the caller's `Exit`; a chunk's parts,
 * joined in order into its result; and what a crash under a chunk leaves.
 * The decoders of a task are built once and shared by all its entries.
 *
 * @internal
 */
import * as Exit from "effect/Exit"
import { SerializationError, TaskNotServed, WorkerCrashed } from "../../PoolError.ts"
import type * as Task from "../../Task.ts"
import { AllSucceeded, type ChunkResult, type ChunkTimer } from "../service/backend.ts"
import { codecFor, decodeDefect, Invalid, type TaskCodec } from "../wire/codec.ts"
import { ExitKind, FromWorker } from "../wire/protocol.ts"
import { type Decode, type Entry, isPoolErrorReply, type Reply } from "./entry.ts"

/** One task's or item's outcome, as the worker encoded it, decoded into the caller's `Exit`. */
const decodeExit = (codec: TaskCodec, tag: string, kind: number, value: unknown): Exit.Exit<any, any> => {
  switch (kind) {
    case ExitKind.Success: {
      const decoded = codec.decodeSuccess(value)
      return decoded instanceof Invalid
        ? Exit.fail(new SerializationError({ task: tag, direction: "result", issue: decoded.issue, side: "caller" }))
        : Exit.succeed(decoded)
    }
    case ExitKind.Failure: {
      const decoded = codec.decodeFailure(value)
      return decoded instanceof Invalid
        ? Exit.fail(new SerializationError({ task: tag, direction: "result", issue: decoded.issue, side: "caller" }))
        : Exit.fail(decoded)
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
      return Exit.fail(new SerializationError({ task: tag, direction: "result", issue: String(value), side: "worker" }))
    case ExitKind.NotServed:
      return Exit.fail(new TaskNotServed({ task: tag }))
    default:
      return Exit.die(new Error(`effect-process-pool: unknown reply kind ${kind} for task "${tag}"`))
  }
}

/**
 * Decodes one item's outcome of a batch.
 *
 * @internal
 */
export type DecodeItem = (kind: number, value: unknown) => Exit.Exit<unknown, unknown>

const itemDecoders = new WeakMap<Task.Task.Any, DecodeItem>()
const replyDecoders = new WeakMap<Task.Task.Any, Decode>()
const streamEndDecoders = new WeakMap<Task.Task.Any, Decode>()

/**
 * The decoder of one item's outcome of a task, built once.
 *
 * @internal
 */
export const itemDecoder = (task: Task.Task.Any): DecodeItem => {
  let decode = itemDecoders.get(task)
  if (decode === undefined) {
    const codec = codecFor(task)
    const tag = task._tag
    decode = (kind, value) => decodeExit(codec, tag, kind, value)
    itemDecoders.set(task, decode)
  }
  return decode
}

/**
 * The reply decoder of a task, built once: every entry of the task shares it.
 *
 * @internal
 */
export const replyDecoder = (task: Task.Task.Any): Decode => {
  let decode = replyDecoders.get(task)
  if (decode === undefined) {
    const item = itemDecoder(task)
    decode = (reply) =>
      isPoolErrorReply(reply)
        ? Exit.fail(reply)
        : reply[0] === FromWorker.Exit
        ? item(reply[2], reply[3])
        : Exit.die(new Error(`effect-process-pool: a batch's answer to the single task "${task._tag}"`))
    replyDecoders.set(task, decode)
  }
  return decode
}

/**
 * The reply decoder of a streaming task's end, built once: its success
 * carries no value, its items came before.
 *
 * @internal
 */
export const streamEndDecoder = (task: Task.Task.Any): Decode => {
  let decode = streamEndDecoders.get(task)
  if (decode === undefined) {
    const decodeReply = replyDecoder(task)
    decode = (reply) =>
      !isPoolErrorReply(reply) && reply[0] === FromWorker.Exit && reply[2] === ExitKind.Success
        ? Exit.void
        : decodeReply(reply)
    streamEndDecoders.set(task, decode)
  }
  return decode
}

/** The outcomes of a chunk's parts, in order, as one; copied once, into an array of the right length. */
const joinResults = (parts: ReadonlyArray<ChunkResult>): ChunkResult => {
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
      for (let i = 0; i < items.length; i++) joined[at++] = values ? items[i] : Exit.succeed(items[i])
    } else {
      for (let i = 0; i < part.length; i++) joined[at++] = part[i]
    }
  }
  return values ? new AllSucceeded(joined) : joined
}

/**
 * A chunk's worker died: the results of its first `received` items came back before.
 *
 * @internal
 */
export class Crashed {
  readonly results: ChunkResult
  readonly received: number
  /** How many items after those the worker may have run. */
  readonly window: number
  readonly error: WorkerCrashed
  constructor(results: ChunkResult, received: number, window: number, error: WorkerCrashed) {
    this.results = results
    this.received = received
    this.window = window
    this.error = error
  }
}

/**
 * The replies of one attempt at a chunk of `size` items, sent as a batch in
 * parts of `every` items: the parts as they come back ahead of the answer,
 * then the answer, joined in order into the chunk's result. The chunk as a
 * whole (not served, interrupted) decodes to one `Exit`, a pool error that
 * ended it fails it, and a crash keeps what came back (`Crashed`). The time
 * the chunk took goes to `timer`.
 *
 * @internal
 */
export class ChunkReplies {
  private readonly codec: TaskCodec
  private readonly decodeItem: DecodeItem
  private readonly size: number
  private readonly every: number
  private readonly timer: ChunkTimer
  private readonly started = performance.now()
  private readonly parts: Array<ChunkResult> = []
  private entry: Entry | undefined = undefined

  constructor(task: Task.Task.Any, size: number, every: number, timer: ChunkTimer) {
    this.codec = codecFor(task)
    this.decodeItem = itemDecoder(task)
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
      this.parts.push(exits ? this.decodeExits(items as Array<[number, unknown]>) : this.decodeValues(items))
    }
  }

  /** The entry's reply decoder: the chunk's result, or `Crashed`. */
  readonly decode: Decode = (reply: Reply) => {
    if (isPoolErrorReply(reply)) {
      // The worker died while it ran this chunk: what finished is kept, and what never started runs again.
      const entry = this.entry
      return reply instanceof WorkerCrashed && entry !== undefined
        ? Exit.succeed(new Crashed(joinResults(this.parts), entry.received, entry.window || this.every, reply))
        : Exit.fail(reply)
    }
    switch (reply[0]) {
      case FromWorker.BatchValues:
        return this.ended(this.decodeValues(reply[2]))
      case FromWorker.BatchExit:
        return this.ended(this.decodeExits(reply[2]))
      default:
        // The chunk as a whole: not served, interrupted.
        return this.decodeItem(reply[2], reply[3])
    }
  }

  private ended(last: ChunkResult): Exit.Exit<ChunkResult> {
    this.timer.record(this.size, performance.now() - this.started)
    this.parts.push(last)
    return Exit.succeed(joinResults(this.parts))
  }

  /** Encoded values, decoded in one codec call; should one not decode, each alone, so that only it fails. */
  private decodeValues(value: unknown): ChunkResult {
    const values = this.codec.decodeSuccesses(value)
    return values instanceof Invalid
      ? (value as Array<unknown>).map((v) => this.decodeItem(ExitKind.Success, v))
      : new AllSucceeded(values as ReadonlyArray<unknown>)
  }

  private decodeExits(items: ReadonlyArray<readonly [number, unknown?]>): ChunkResult {
    return items.map(([k, v]) => this.decodeItem(k, v))
  }
}
