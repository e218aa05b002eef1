/**
 * Framing between the parent and one worker: a dedicated pipe (fd 3 in the
 * child) carrying length-prefixed frames, and every message sent during one
 * tick packed into a single write.
 *
 * A frame is a 4-byte big-endian length and that many bytes: UTF-8 JSON (an
 * array of messages); with the high bit set, one binary message (see
 * binary.ts); with the next bit set, a 13-byte reference to a frame written
 * to the sender's shared file (see `Shared` and sharedFile.ts). Every side
 * reads the messages of a frame through `decodeFrame`.
 *
 * @internal
 */
import { Binary, decodeBinary } from "./binary.ts"
import {
  decodeFromWorker,
  decodeToWorker,
  type FromWorkerMessage,
  MessageInvalid,
  type ToWorkerMessage
} from "./protocol.ts"

/** @internal */
export const defaultMaxFrameSize = 256 * 1024 * 1024

/** A frame that breaks the protocol in another way: the stream cannot be trusted after it. @internal */
export class FrameInvalid extends Error {}

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

/**
 * The next bit marks a shared frame: its 13 bytes say where, in the worker's
 * shared file, the real frame's bytes were written, and whether they are a
 * binary message or a JSON frame. See {@link Shared}.
 */
const sharedFlag = 0x40000000

/** The size of a shared frame's body: kind (1 byte), offset (8), length (4). */
const sharedBody = 13

/** The largest frame the length field can describe. @internal */
export const maxFrameLimit = sharedFlag - 1

/**
 * A large message that travels through a shared file instead of the pipe:
 * the sender has written its bytes at `offset`, and the pipe carries only
 * this reference. A pipe holds about 200 KB, so a message of a megabyte
 * crosses it in many rounds, each waiting for both processes to be
 * scheduled; through the file it is one write and one read of memory the
 * kernel already holds (tmpfs pages, reused).
 *
 * @internal
 */
export class Shared {
  readonly binary: boolean
  readonly offset: number
  readonly length: number
  constructor(binary: boolean, offset: number, length: number) {
    this.binary = binary
    this.offset = offset
    this.length = length
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
  private pending: Array<string | Binary | Shared> = []
  private scheduled = false

  private readonly out: FrameSink | FramePort
  private readonly schedule: (flush: () => void) => void

  /** Whether the first message after a pause is written at once (see `idle`). */
  private readonly eager: boolean

  constructor(
    out: FrameSink | FramePort,
    schedule: (flush: () => void) => void = setImmediate,
    options: { readonly eager?: boolean } = {}
  ) {
    this.out = out
    this.schedule = schedule
    this.eager = options.eager ?? false
  }

  /**
   * Whether the next message goes out at once: nothing was sent during the
   * last tick. The first message after a pause is written when it is sent,
   * rather than a tick later, and the rest of a burst is packed as usual.
   */
  private idle = true

  /** Queues one message, JSON-encoded, binary or shared, for the end of this tick. */
  send(message: string | Binary | Shared): void {
    this.pending.push(message)
    if (this.scheduled) return
    this.scheduled = true
    if (!this.eager) return this.schedule(this.flushScheduled)
    if (this.idle) {
      this.idle = false
      this.flush()
    }
    this.schedule(this.tick)
  }

  private readonly flushScheduled = (): void => {
    this.scheduled = false
    this.flush()
  }

  /** The end of an eager writer's tick: writes what came meanwhile; a tick with nothing to write makes it idle. */
  private readonly tick = (): void => {
    if (this.pending.length === 0) {
      this.scheduled = false
      this.idle = true
      return
    }
    this.flush()
    this.schedule(this.tick)
  }

  /** Whether messages are waiting to be written. */
  get hasPending(): boolean {
    return this.pending.length > 0
  }

  /** Writes every queued message now, in one write. */
  readonly flush = (): void => {
    const pending = this.pending
    if (pending.length === 0) return
    this.pending = []
    const frames: Array<string | Binary | Shared> = []
    let start = 0
    let size = 0
    for (let i = 0; i < pending.length; i++) {
      const message = pending[i]
      if (typeof message !== "string") {
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
    if ("post" in this.out) { for (const frame of frames) this.out.post(frame as string | Binary) }
    else writeFrames(this.out, frames)
  }
}

/**
 * Where frames go between threads: each frame is one message of a
 * `MessagePort`, which needs no length prefix (see wire/port.ts).
 */
export interface FramePort {
  post(frame: string | Binary): void
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
const writeFrames = (out: FrameSink, frames: ReadonlyArray<string | Binary | Shared>): void => {
  if (out.cork === undefined || !frames.some((frame) => frame instanceof Binary && frame.length >= inPlace)) {
    out.write(encodeFrames(frames))
    return
  }
  out.cork()
  let start = 0
  for (let i = 0; i < frames.length; i++) {
    const frame = frames[i]
    if (!(frame instanceof Binary) || frame.length < inPlace) continue
    if (start < i) out.write(encodeFrames(frames.slice(start, i)))
    const header = Buffer.allocUnsafe(4)
    header.writeUInt32BE((frame.length | binaryFlag) >>> 0, 0)
    out.write(header)
    for (const part of frame.parts) out.write(part)
    start = i + 1
  }
  if (start < frames.length) out.write(encodeFrames(frames.slice(start)))
  out.uncork!()
}

/** @internal */
export const encodeFrames = (frames: ReadonlyArray<string | Binary | Shared>): Buffer => {
  let total = 0
  const lengths = new Array<number>(frames.length)
  for (let i = 0; i < frames.length; i++) {
    const frame = frames[i]
    const length = frame instanceof Binary
      ? frame.length
      : frame instanceof Shared
      ? sharedBody
      : Buffer.byteLength(frame)
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
      for (const part of frame.parts) {
        buffer.set(part, offset)
        offset += part.byteLength
      }
    } else if (frame instanceof Shared) {
      buffer.writeUInt32BE((sharedBody | sharedFlag) >>> 0, offset)
      buffer.writeUInt8(frame.binary ? 1 : 0, offset + 4)
      buffer.writeDoubleBE(frame.offset, offset + 5)
      buffer.writeUInt32BE(frame.length, offset + 13)
      offset += 4 + sharedBody
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
 * binary frame to `onBinary` as bytes, and a shared frame is read with
 * `readShared` and handed on as the frame it points to. `push` returns a
 * `FrameTooLarge` when a frame announces more than `maxFrameSize` bytes, and
 * a `FrameInvalid` for a shared frame it cannot follow; the stream cannot be
 * trusted after either.
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
  private readonly readShared: ((offset: number, length: number) => Buffer) | undefined

  constructor(
    onJson: (json: string) => void,
    onBinary: (bytes: Buffer) => void,
    maxFrameSize: number = defaultMaxFrameSize,
    readShared?: (offset: number, length: number) => Buffer
  ) {
    this.onJson = onJson
    this.onBinary = onBinary
    this.maxFrameSize = maxFrameSize
    this.readShared = readShared
  }

  /** Reads the frame a shared frame points to, and hands it on like one that came through the pipe. */
  private shared(body: Buffer): FrameTooLarge | FrameInvalid | undefined {
    const binary = body.readUInt8(0)
    const offset = body.readDoubleBE(1)
    const length = body.readUInt32BE(9)
    if (length > this.maxFrameSize) return new FrameTooLarge(length, this.maxFrameSize)
    if (this.readShared === undefined) return new FrameInvalid("a shared frame came, but there is no shared file")
    if (binary > 1 || !Number.isSafeInteger(offset) || offset < 0) {
      return new FrameInvalid("a shared frame points nowhere")
    }
    let bytes: Buffer
    try {
      bytes = this.readShared(offset, length)
    } catch (cause) {
      return new FrameInvalid(`the shared file could not be read: ${cause instanceof Error ? cause.message : cause}`)
    }
    if (binary === 1) this.onBinary(bytes)
    else this.onJson(bytes.toString("utf8"))
    return undefined
  }

  push(chunk: Buffer): FrameTooLarge | FrameInvalid | undefined {
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
      const shared = !binary && header >= sharedFlag
      const length = binary ? header - binaryFlag : shared ? header - sharedFlag : header
      if (shared && length !== sharedBody) return new FrameInvalid(`a shared frame of ${length} bytes`)
      if (length > this.maxFrameSize) return new FrameTooLarge(length, this.maxFrameSize)
      if (end - offset - 4 < length) {
        this.needed = 4 + length
        break
      }
      if (shared) {
        const error = this.shared(buffer.subarray(offset + 4, offset + 4 + length))
        if (error !== undefined) return error
      } else if (binary) this.onBinary(buffer.subarray(offset + 4, offset + 4 + length))
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

/** The messages each side sends: the parent's to a worker, a worker's to the parent. @internal */
export interface MessageFrom {
  readonly parent: ToWorkerMessage
  readonly worker: FromWorkerMessage
}

/**
 * Reads the messages of one frame, as {@link FrameReader} hands it on: a JSON
 * frame's text (an array of messages) or a binary frame's bytes (one
 * message, whose large byte arrays are in `apart` when they were moved between
 * threads apart from it). Each message is read with the decoder of its direction,
 * `decodeToWorker` for a frame from the parent, `decodeFromWorker` for one
 * from a worker, and handed to `receive` in order; `receive` returns false to
 * stop at that message. Every side reads frames here: the worker, the parent,
 * and the workers served in memory.
 *
 * Returns why the frame, or a message in it, is refused; the messages before
 * that one have been received. The stream cannot be trusted after it.
 *
 * @internal
 */
export const decodeFrame = <From extends keyof MessageFrom>(
  frame: string | Buffer,
  from: From,
  receive: (message: MessageFrom[From]) => boolean | void,
  apart?: ReadonlyArray<Uint8Array>
): MessageInvalid | undefined => {
  const decode = (from === "parent" ? decodeToWorker : decodeFromWorker) as (
    message: unknown
  ) => MessageFrom[From] | MessageInvalid
  if (typeof frame !== "string") {
    let message: unknown
    try {
      message = decodeBinary(frame, apart)
    } catch {
      return new MessageInvalid(`a binary frame from the ${from} does not deserialize`)
    }
    const decoded = decode(message)
    if (decoded instanceof MessageInvalid) return decoded
    receive(decoded)
    return undefined
  }
  let messages: unknown
  try {
    messages = JSON.parse(frame)
  } catch {
    return new MessageInvalid(`a frame from the ${from} is not JSON`)
  }
  if (!Array.isArray(messages)) return new MessageInvalid(`a frame from the ${from} is not an array`)
  for (let i = 0; i < messages.length; i++) {
    const decoded = decode(messages[i])
    if (decoded instanceof MessageInvalid) return decoded
    if (receive(decoded) === false) return undefined
  }
  return undefined
}
