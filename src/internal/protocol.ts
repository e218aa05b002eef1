/**
 * The wire between the parent and one worker: a dedicated pipe (fd 3 in the
 * child) carrying length-prefixed JSON frames.
 *
 * A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON: an
 * array of the messages sent during one tick, so that one read and one
 * `JSON.parse` serve many tasks. Each message is itself a JSON array whose
 * first element is its kind. Arrays keep frames small and parsing cheap.
 *
 * ```
 * parent -> worker
 *   [Run,       id, tag, payload, trace]      one task
 *   [RunBatch,  id, tag, [payload, ...], trace] many payloads of one task, one reply
 *   [Interrupt, id]                           stop task id (queued or running)
 *   [Shutdown]                                finish and exit
 *   [Ping, seq]                               answer at once: the event loop is alive
 * worker -> parent
 *   [Ready, pid, [tag, ...]]                  the module is loaded, services are built
 *   [Exit,  id, kind, value]                  task id ended (kind: ExitKind)
 *   [BatchExit, id, [[kind, value], ...]]     every item of batch id ended
 *   [BatchValues, id, [value, ...]]           every item of batch id succeeded: the values alone
 *   [Pong, seq, rss]                          the answer to Ping, with the resident set size
 *   [Recycle, reason]                         past its memory ceiling: replace me
 * ```
 *
 * `trace` is `0` or `[traceId, spanId, sampled]`, the caller's span, so that
 * worker spans can join the caller's trace. Kinds not listed are reserved: a
 * task that streams its items will add its own.
 *
 * @internal
 */

/** @internal */
export const ToWorker = {
  Run: 0,
  Interrupt: 1,
  Shutdown: 2,
  RunBatch: 3,
  Ping: 4
} as const

/** @internal */
export const FromWorker = {
  Ready: 0,
  Exit: 1,
  BatchExit: 2,
  Pong: 3,
  Recycle: 4,
  BatchValues: 5
} as const

/** @internal */
export const ExitKind = {
  /** value: the encoded success */
  Success: 0,
  /** value: the encoded typed failure */
  Failure: 1,
  /** value: the encoded defect */
  Defect: 2,
  /** the task was interrupted at the parent's request; no value */
  Interrupted: 3,
  /** value: the issue; the worker could not decode the payload */
  PayloadInvalid: 4,
  /** value: the issue; the worker could not encode the result */
  ResultInvalid: 5,
  /** the module serves no handler for the tag; no value */
  NotServed: 6
} as const

/** @internal */
export type ExitKind = typeof ExitKind[keyof typeof ExitKind]

/** Whether a value is a known `ExitKind`. @internal */
export const isExitKind = (u: unknown): u is ExitKind =>
  typeof u === "number" && Number.isInteger(u) && u >= ExitKind.Success && u <= ExitKind.NotServed

/** @internal */
export const defaultMaxFrameSize = 256 * 1024 * 1024

/** @internal */
export class FrameTooLarge extends Error {
  readonly size: number
  readonly maxFrameSize: number
  constructor(size: number, maxFrameSize: number) {
    super(`A frame of ${size} bytes exceeds the maximum frame size of ${maxFrameSize} bytes`)
    this.size = size
    this.maxFrameSize = maxFrameSize
  }
}

/** Messages are packed into frames of about this many characters at most. */
const frameTarget = 1024 * 1024

/**
 * Packs every message sent during one tick into a single write, as frames of
 * about 1 MiB at most.
 *
 * @internal
 */
export class FrameWriter {
  private pending: Array<string> = []
  private scheduled = false

  private readonly out: { write(chunk: Uint8Array): unknown }
  private readonly schedule: (flush: () => void) => void

  constructor(
    out: { write(chunk: Uint8Array): unknown },
    schedule: (flush: () => void) => void = setImmediate
  ) {
    this.out = out
    this.schedule = schedule
  }

  /** Queues one JSON-encoded message for the end of this tick. */
  send(json: string): void {
    this.pending.push(json)
    if (!this.scheduled) {
      this.scheduled = true
      this.schedule(this.flush)
    }
  }

  /** Whether messages are waiting to be written. */
  get hasPending(): boolean {
    return this.pending.length > 0
  }

  /** Writes every queued message now, in one write. */
  readonly flush = (): void => {
    this.scheduled = false
    const pending = this.pending
    if (pending.length === 0) return
    this.pending = []
    const frames: Array<string> = []
    let start = 0
    let size = 0
    for (let i = 0; i < pending.length; i++) {
      size += pending[i].length + 1
      if (size >= frameTarget || i === pending.length - 1) {
        frames.push(`[${pending.slice(start, i + 1).join(",")}]`)
        start = i + 1
        size = 0
      }
    }
    this.out.write(encodeFrames(frames))
  }
}

/** @internal */
export const encodeFrames = (messages: ReadonlyArray<string>): Buffer => {
  let total = 0
  const lengths = new Array<number>(messages.length)
  for (let i = 0; i < messages.length; i++) {
    const length = Buffer.byteLength(messages[i])
    lengths[i] = length
    total += 4 + length
  }
  const buffer = Buffer.allocUnsafe(total)
  let offset = 0
  for (let i = 0; i < messages.length; i++) {
    buffer.writeUInt32BE(lengths[i], offset)
    offset += 4
    offset += buffer.write(messages[i], offset, "utf8")
  }
  return buffer
}

/**
 * Splits a byte stream into frames. `push` returns a `FrameTooLarge` when a
 * frame announces more than `maxFrameSize` bytes; the stream cannot be trusted
 * after that.
 *
 * @internal
 */
export class FrameReader {
  private chunks: Array<Buffer> = []
  private size = 0
  // Bytes that must have arrived before parsing is worth trying: a large frame
  // arriving in many reads is concatenated once, not once per read.
  private needed = 4
  /** Since when part of a frame has been waiting for the rest, in `performance.now()` ms; 0 when none. */
  partialSince = 0

  private readonly onFrame: (json: string) => void
  private readonly maxFrameSize: number

  constructor(onFrame: (json: string) => void, maxFrameSize: number = defaultMaxFrameSize) {
    this.onFrame = onFrame
    this.maxFrameSize = maxFrameSize
  }

  push(chunk: Buffer): FrameTooLarge | undefined {
    this.chunks.push(chunk)
    this.size += chunk.length
    if (this.size < this.needed) {
      if (this.size > 0 && this.partialSince === 0) this.partialSince = performance.now()
      return undefined
    }
    const buffer = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size)
    this.chunks = []
    this.size = 0
    this.needed = 4
    let offset = 0
    const end = buffer.length
    while (end - offset >= 4) {
      const length = buffer.readUInt32BE(offset)
      if (length > this.maxFrameSize) return new FrameTooLarge(length, this.maxFrameSize)
      if (end - offset - 4 < length) {
        this.needed = 4 + length
        break
      }
      this.onFrame(buffer.toString("utf8", offset + 4, offset + 4 + length))
      offset += 4 + length
    }
    if (offset < end) {
      const rest = buffer.subarray(offset)
      // A small remainder is copied so that it does not pin a large read buffer.
      this.chunks.push(rest.length < 4096 ? Buffer.from(rest) : rest)
      this.size = rest.length
      if (offset > 0 || this.partialSince === 0) this.partialSince = performance.now()
    } else {
      this.partialSince = 0
    }
    return undefined
  }
}
