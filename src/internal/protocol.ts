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

/** The high bit of a frame's length marks a binary frame: one message in V8's serialization format. */
const binaryFlag = 0x80000000

/** The largest frame the length field can describe. @internal */
export const maxFrameLimit = binaryFlag - 1

/**
 * A message already serialized by V8 (`v8.serialize`), for tasks declared
 * with `serialization: "binary"`: bytes travel raw, not as base64 in JSON.
 *
 * @internal
 */
export class Binary {
  readonly bytes: Buffer
  constructor(bytes: Buffer) {
    this.bytes = bytes
  }
}

/**
 * Packs every message sent during one tick into a single write. JSON messages
 * share frames of about 1 MiB at most; each binary message has a frame of its
 * own. Messages keep the order in which they were sent.
 *
 * @internal
 */
export class FrameWriter {
  private pending: Array<string | Binary> = []
  private scheduled = false

  private readonly out: FrameSink
  private readonly schedule: (flush: () => void) => void

  constructor(
    out: FrameSink,
    schedule: (flush: () => void) => void = setImmediate
  ) {
    this.out = out
    this.schedule = schedule
  }

  /** Queues one message, JSON-encoded or binary, for the end of this tick. */
  send(message: string | Binary): void {
    this.pending.push(message)
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
    const frames: Array<string | Binary> = []
    let start = 0
    let size = 0
    for (let i = 0; i < pending.length; i++) {
      const message = pending[i]
      if (message instanceof Binary) {
        if (start < i) frames.push(`[${pending.slice(start, i).join(",")}]`)
        frames.push(message)
        start = i + 1
        size = 0
        continue
      }
      size += message.length + 1
      if (size >= frameTarget || i === pending.length - 1) {
        frames.push(`[${pending.slice(start, i + 1).join(",")}]`)
        start = i + 1
        size = 0
      }
    }
    writeFrames(this.out, frames)
  }
}

/** Where frames are written: a socket, or anything with `write`; `cork` and `uncork` allow one gathered write. */
export interface FrameSink {
  write(chunk: Uint8Array): unknown
  cork?(): void
  uncork?(): void
}

/** Binary frames at least this large are written in place, not copied into the frame buffer. */
const inPlace = 64 * 1024

/**
 * Writes frames in one gathered write: small frames are packed into one
 * buffer, and the bytes of a large binary frame are handed to the socket as
 * they are, without a copy.
 */
const writeFrames = (out: FrameSink, frames: ReadonlyArray<string | Binary>): void => {
  if (out.cork === undefined || !frames.some((frame) => frame instanceof Binary && frame.bytes.length >= inPlace)) {
    out.write(encodeFrames(frames))
    return
  }
  out.cork()
  let start = 0
  for (let i = 0; i < frames.length; i++) {
    const frame = frames[i]
    if (!(frame instanceof Binary) || frame.bytes.length < inPlace) continue
    if (start < i) out.write(encodeFrames(frames.slice(start, i)))
    const header = Buffer.allocUnsafe(4)
    header.writeUInt32BE((frame.bytes.length | binaryFlag) >>> 0, 0)
    out.write(header)
    out.write(frame.bytes)
    start = i + 1
  }
  if (start < frames.length) out.write(encodeFrames(frames.slice(start)))
  out.uncork!()
}

/** @internal */
export const encodeFrames = (frames: ReadonlyArray<string | Binary>): Buffer => {
  let total = 0
  const lengths = new Array<number>(frames.length)
  for (let i = 0; i < frames.length; i++) {
    const frame = frames[i]
    const length = frame instanceof Binary ? frame.bytes.length : Buffer.byteLength(frame)
    lengths[i] = length
    total += 4 + length
  }
  const buffer = Buffer.allocUnsafe(total)
  let offset = 0
  for (let i = 0; i < frames.length; i++) {
    const frame = frames[i]
    if (frame instanceof Binary) {
      buffer.writeUInt32BE((lengths[i] | binaryFlag) >>> 0, offset)
      offset += 4
      offset += frame.bytes.copy(buffer, offset)
    } else {
      buffer.writeUInt32BE(lengths[i], offset)
      offset += 4
      offset += buffer.write(frame, offset, "utf8")
    }
  }
  return buffer
}

/**
 * Splits a byte stream into frames: a JSON frame goes to `onJson` as text, a
 * binary frame to `onBinary` as bytes. `push` returns a `FrameTooLarge` when
 * a frame announces more than `maxFrameSize` bytes; the stream cannot be
 * trusted after that.
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

  private readonly onJson: (json: string) => void
  private readonly onBinary: (bytes: Buffer) => void
  private readonly maxFrameSize: number

  constructor(
    onJson: (json: string) => void,
    onBinary: (bytes: Buffer) => void,
    maxFrameSize: number = defaultMaxFrameSize
  ) {
    this.onJson = onJson
    this.onBinary = onBinary
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
      const header = buffer.readUInt32BE(offset)
      const binary = header >= binaryFlag
      const length = binary ? header - binaryFlag : header
      if (length > this.maxFrameSize) return new FrameTooLarge(length, this.maxFrameSize)
      if (end - offset - 4 < length) {
        this.needed = 4 + length
        break
      }
      if (binary) this.onBinary(buffer.subarray(offset + 4, offset + 4 + length))
      else this.onJson(buffer.toString("utf8", offset + 4, offset + 4 + length))
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
