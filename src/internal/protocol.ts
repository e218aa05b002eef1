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
 *   [Release, offset]                         the parent has read what the worker put at offset
 *                                             in its shared file: the region is free
 * worker -> parent
 *   [Ready, pid, [tag, ...]]                  the module is loaded, services are built
 *   [Exit,  id, kind, value]                  task id ended (kind: ExitKind)
 *   [BatchExit, id, [[kind, value], ...]]     every item of batch id ended
 *   [BatchValues, id, [value, ...]]           every item of batch id succeeded: the values alone
 *   [Pong, seq, rss]                          the answer to Ping, with the resident set size
 *   [Recycle, reason]                         past its memory ceiling: replace me
 *   [StartFailed, summary]                    instead of Ready: why the worker cannot start, the user's error first
 * ```
 *
 * A message of 64 KiB or more may instead be written to the sender's shared
 * file, with only a reference (a shared frame) on the pipe: see `Shared`.
 *
 * `trace` is `0` or `[traceId, spanId, sampled]`, the caller's span, so that
 * worker spans can join the caller's trace. Kinds not listed are reserved: a
 * task that streams its items will add its own.
 *
 * @internal
 */
import * as v8 from "node:v8"

/** @internal */
export const ToWorker = {
  Run: 0,
  Interrupt: 1,
  Shutdown: 2,
  RunBatch: 3,
  Ping: 4,
  Release: 5
} as const

/** @internal */
export const FromWorker = {
  Ready: 0,
  Exit: 1,
  BatchExit: 2,
  Pong: 3,
  Recycle: 4,
  BatchValues: 5,
  StartFailed: 6
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
 * A message already serialized, for tasks declared with
 * `serialization: "binary"`: bytes travel raw, not as base64 in JSON. It is
 * kept in parts, so that large byte arrays are written where they are, never
 * copied into a serialization buffer first (see {@link Binary.encode}).
 *
 * @internal
 */
export class Binary {
  readonly parts: ReadonlyArray<Uint8Array>
  readonly length: number
  private joined: Buffer | undefined

  constructor(parts: Uint8Array | ReadonlyArray<Uint8Array>) {
    this.parts = parts instanceof Uint8Array ? [parts] : parts
    let length = 0
    for (const part of this.parts) length += part.byteLength
    this.length = length
  }

  /** The message as one buffer, joined once when a caller needs it whole. */
  get bytes(): Buffer {
    if (this.joined === undefined) {
      const parts = this.parts
      this.joined = parts.length === 1
        ? Buffer.from(parts[0].buffer, parts[0].byteOffset, parts[0].byteLength)
        : Buffer.concat(parts, this.length)
    }
    return this.joined
  }

  /**
   * Serializes a message with V8's format, except that byte arrays of
   * {@link attachmentSize} or more are left out of the serialized head and
   * follow it as they are: `[head length: u32][head][attachments, each at a
   * multiple of 8]`. `v8.serialize` would copy each into its growing buffer.
   */
  static encode(message: unknown): Binary {
    const serializer = new AttachingSerializer()
    serializer.writeHeader()
    serializer.writeValue(message)
    const head = serializer.releaseBuffer()
    const prefix = Buffer.allocUnsafe(4)
    prefix.writeUInt32BE(head.length, 0)
    const parts: Array<Uint8Array> = [prefix, head]
    let at = 4 + head.length
    for (const attachment of serializer.attachments) {
      const start = aligned(at)
      if (start > at) parts.push(padding.subarray(0, start - at))
      parts.push(attachment)
      at = start + attachment.byteLength
    }
    return new Binary(parts)
  }
}

/** Byte arrays at least this large travel beside the serialized message, not inside it. */
const attachmentSize = 64 * 1024

const padding = new Uint8Array(8)

/** The first multiple of 8 at or after `at`: where an attached array starts. */
const aligned = (at: number): number => at + ((8 - (at % 8)) % 8)

/** The views V8 cannot serialize itself, by the index written for an attached one. */
const views = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array
] as const

/** Index of the Buffer constructor, kept apart: it is a Uint8Array subclass, and comes back a Buffer. */
const bufferView = views.length

const viewIndex = (view: NodeJS.ArrayBufferView): number => {
  if (Buffer.isBuffer(view)) return bufferView
  for (let i = 0; i < views.length; i++) if (Object.getPrototypeOf(view) === views[i].prototype) return i
  return -1
}

// Node's handling of byte arrays, which its type declarations leave out.
const defaultWriteHostObject = (v8.DefaultSerializer.prototype as unknown as {
  readonly _writeHostObject: (this: v8.Serializer, view: NodeJS.ArrayBufferView) => void
})._writeHostObject
const defaultReadHostObject = (v8.DefaultDeserializer.prototype as unknown as {
  readonly _readHostObject: (this: v8.Deserializer) => NodeJS.ArrayBufferView
})._readHostObject

class AttachingSerializer extends v8.DefaultSerializer {
  readonly attachments: Array<Uint8Array> = []
  _writeHostObject(view: NodeJS.ArrayBufferView): void {
    const index = view.byteLength >= attachmentSize ? viewIndex(view) : -1
    if (index < 0) {
      this.writeUint32(0)
      return defaultWriteHostObject.call(this, view)
    }
    this.writeUint32(1)
    this.writeUint32(index)
    this.writeUint32(view.byteLength)
    this.attachments.push(new Uint8Array(view.buffer, view.byteOffset, view.byteLength))
  }
}

class AttachedDeserializer extends v8.DefaultDeserializer {
  private readonly region: Buffer
  private cursor: number
  constructor(region: Buffer, head: Buffer) {
    super(head)
    this.region = region
    this.cursor = 4 + head.length
  }
  _readHostObject(): NodeJS.ArrayBufferView {
    if (this.readUint32() === 0) return defaultReadHostObject.call(this)
    const index = this.readUint32()
    const byteLength = this.readUint32()
    const start = aligned(this.cursor)
    if (index > bufferView || start + byteLength > this.region.length) {
      throw new Error("an attached byte array lies outside its message")
    }
    this.cursor = start + byteLength
    const region = this.region
    if (index === bufferView) return Buffer.from(region.buffer, region.byteOffset + start, byteLength)
    const View = views[index]
    const size = View.BYTES_PER_ELEMENT
    if (byteLength % size !== 0) throw new Error("an attached byte array does not fit its type")
    const offset = region.byteOffset + start
    // Misaligned in memory (the region's own offset is arbitrary): copied to an aligned buffer.
    return offset % size === 0
      ? new View(region.buffer as ArrayBuffer, offset, byteLength / size)
      : new View(region.buffer.slice(offset, offset + byteLength) as ArrayBuffer)
  }
}

/**
 * Reads a message encoded by {@link Binary.encode}. Attached arrays are views
 * into `bytes`, not copies. Throws on anything malformed.
 *
 * @internal
 */
export const decodeBinary = (bytes: Buffer): unknown => {
  if (bytes.length < 4) throw new Error("a binary message shorter than its header")
  const length = bytes.readUInt32BE(0)
  if (4 + length > bytes.length) throw new Error("a binary message shorter than its head")
  const deserializer = new AttachedDeserializer(bytes, bytes.subarray(4, 4 + length))
  deserializer.readHeader()
  return deserializer.readValue()
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

  private readonly out: FrameSink
  private readonly schedule: (flush: () => void) => void

  constructor(
    out: FrameSink,
    schedule: (flush: () => void) => void = setImmediate
  ) {
    this.out = out
    this.schedule = schedule
  }

  /** Queues one message, JSON-encoded, binary or shared, for the end of this tick. */
  send(message: string | Binary | Shared): void {
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
