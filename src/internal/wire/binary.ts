/**
 * The binary wire format, for tasks declared with `serialization: "binary"`:
 * one message in V8's serialization format, with large byte arrays carried
 * beside the serialized head rather than copied into it.
 *
 * @internal
 */
import type * as v8 from "node:v8"

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
  /** The byte arrays that follow the head, as views of the sender's own arrays. */
  readonly attached: ReadonlyArray<Uint8Array>
  /** Whether, between threads, the attached arrays are moved rather than copied (see wire/port.ts). */
  readonly transfer: boolean
  /** Set once the attached arrays were moved to another thread: the message cannot be sent again. */
  moved = false
  private joined: Buffer | undefined

  constructor(
    parts: Uint8Array | ReadonlyArray<Uint8Array>,
    attached: ReadonlyArray<Uint8Array> = [],
    transfer = false
  ) {
    this.parts = parts instanceof Uint8Array ? [parts] : parts
    this.attached = attached
    this.transfer = transfer
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
   * With `transfer`, the message takes the attached arrays for its own: an
   * array that is the whole of its buffer is moved into the message (the
   * sender's array is left empty, nothing is copied), and any other is
   * copied. A thread's port then moves them on to the other side.
   */
  static encode(message: unknown, transfer = false): Binary {
    const serializer = new (classes().AttachingSerializer)(transfer)
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
    return new Binary(parts, serializer.attachments, transfer)
  }
}

/**
 * How a task's messages travel: as JSON (`false`), in V8's format (`true`),
 * or in V8's format with large byte arrays moved between threads
 * (`"transfer"`).
 *
 * @internal
 */
export type BinaryMode = boolean | "transfer"

/** A task's {@link BinaryMode}. @internal */
export const binaryMode = (task: { readonly serialization: "json" | "binary"; readonly transfer: boolean }) =>
  task.serialization === "json" ? false : task.transfer ? "transfer" as const : true

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

/**
 * The serializer and deserializer, as classes made at the first binary
 * message: `node:v8` costs the parent about 3 MB and 3 ms of start, which a
 * pool of JSON tasks never pays.
 */
const makeClasses = (v8: typeof import("node:v8")) => {
  // Node's handling of byte arrays, which its type declarations leave out.
  const defaultWriteHostObject = (v8.DefaultSerializer.prototype as unknown as {
    readonly _writeHostObject: (this: v8.Serializer, view: NodeJS.ArrayBufferView) => void
  })._writeHostObject
  const defaultReadHostObject = (v8.DefaultDeserializer.prototype as unknown as {
    readonly _readHostObject: (this: v8.Deserializer) => NodeJS.ArrayBufferView
  })._readHostObject

  class AttachingSerializer extends v8.DefaultSerializer {
    readonly attachments: Array<Uint8Array> = []
    private readonly transfer: boolean
    constructor(transfer: boolean) {
      super()
      this.transfer = transfer
    }
    _writeHostObject(view: NodeJS.ArrayBufferView): void {
      // An array whose memory was moved away (by an earlier call of a task with `transfer`) would cross as empty.
      if ((view.buffer as ArrayBuffer).detached === true) {
        throw new Error("a byte array whose memory was moved away by an earlier transfer; pass an array of its own")
      }
      const index = view.byteLength >= attachmentSize ? viewIndex(view) : -1
      if (index < 0) {
        this.writeUint32(0)
        return defaultWriteHostObject.call(this, view)
      }
      this.writeUint32(1)
      this.writeUint32(index)
      this.writeUint32(view.byteLength)
      const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
      this.attachments.push(this.transfer ? own(bytes) : bytes)
    }
  }

  class AttachedDeserializer extends v8.DefaultDeserializer {
    private readonly region: Buffer
    private cursor: number
    /** The attached arrays, when they came apart from the head (moved between threads). */
    private readonly apart: ReadonlyArray<Uint8Array> | undefined
    private next = 0
    constructor(region: Buffer, head: Buffer, apart?: ReadonlyArray<Uint8Array>) {
      super(head)
      this.region = region
      this.cursor = 4 + head.length
      this.apart = apart
    }
    _readHostObject(): NodeJS.ArrayBufferView {
      if (this.readUint32() === 0) return defaultReadHostObject.call(this)
      const index = this.readUint32()
      const byteLength = this.readUint32()
      if (this.apart !== undefined) return this.readApart(index, byteLength)
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
    /** The next attached array that came apart: its own buffer, from offset 0, so always aligned. */
    private readApart(index: number, byteLength: number): NodeJS.ArrayBufferView {
      const part = this.apart![this.next++]
      if (index > bufferView || part === undefined || part.byteLength !== byteLength) {
        throw new Error("an attached byte array does not match its message")
      }
      if (index === bufferView) return Buffer.from(part.buffer, part.byteOffset, byteLength)
      const View = views[index]
      const size = View.BYTES_PER_ELEMENT
      if (byteLength % size !== 0) throw new Error("an attached byte array does not fit its type")
      return part.byteOffset % size === 0
        ? new View(part.buffer as ArrayBuffer, part.byteOffset, byteLength / size)
        : new View(part.buffer.slice(part.byteOffset, part.byteOffset + byteLength) as ArrayBuffer)
    }
  }
  return { AttachingSerializer, AttachedDeserializer }
}

/**
 * An array of bytes of the message's own: the whole of a buffer is moved
 * (`ArrayBuffer.prototype.transfer` leaves the sender's empty, and copies
 * nothing); a view of part of one, or of shared memory, is copied, since
 * moving it would take the rest.
 */
const own = (bytes: Uint8Array): Uint8Array => {
  const buffer = bytes.buffer
  if (buffer instanceof ArrayBuffer && bytes.byteOffset === 0 && bytes.byteLength === buffer.byteLength) {
    try {
      return new Uint8Array(buffer.transfer())
    } catch {
      // A buffer that cannot be detached (WebAssembly memory): copied.
    }
  }
  return bytes.slice()
}

let made: ReturnType<typeof makeClasses> | undefined

const classes = (): ReturnType<typeof makeClasses> => (made ??= makeClasses(process.getBuiltinModule("node:v8")))

/**
 * Reads a message encoded by {@link Binary.encode}. Attached arrays are views
 * into `bytes`, or, when they were moved between threads apart from the
 * head, the arrays in `apart`: never copies. Throws on anything malformed.
 *
 * @internal
 */
export const decodeBinary = (bytes: Buffer, apart?: ReadonlyArray<Uint8Array>): unknown => {
  if (bytes.length < 4) throw new Error("a binary message shorter than its header")
  const length = bytes.readUInt32BE(0)
  if (4 + length > bytes.length) throw new Error("a binary message shorter than its head")
  const deserializer = new (classes().AttachedDeserializer)(bytes, bytes.subarray(4, 4 + length), apart)
  deserializer.readHeader()
  return deserializer.readValue()
}
