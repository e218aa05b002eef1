/**
 * The writing side of a shared file: large messages are written here and
 * only a reference to them crosses the pipe (see `Shared` in protocol.ts).
 *
 * Each worker has two, both in tmpfs (`/dev/shm`), opened by the parent,
 * passed to the worker as its file descriptors 4 (parent to worker) and 5
 * (worker to parent), and unlinked at once: no name is ever left behind,
 * whatever happens to either process. The reader frees a region by its reply
 * (payloads) or by a Release message (results). Regions are reused lowest
 * offset first, so a steady stream of large messages rewrites pages the
 * kernel already holds instead of allocating new ones.
 *
 * @internal
 */
import * as fs from "node:fs"
import { Binary } from "./binary.ts"
import { Shared } from "./transport.ts"

/** Messages at least this large go through the shared file. */
const sharedThreshold = 64 * 1024

/** The most a worker's shared file holds at once; past it, messages take the pipe. */
const capacity = 256 * 1024 * 1024

/** When everything is released and the file has grown past this, its pages are given back. */
const shrinkAbove = 16 * 1024 * 1024

const directory = "/dev/shm"

let files = 0

interface Region {
  readonly id: number
  readonly offset: number
  readonly end: number
}

/** @internal */
export class SharedFile {
  readonly fd: number
  /** Bytes sent through the file, for the pool's stats. */
  sentBytes = 0
  /** Regions written and not yet known to be read, by offset. */
  private regions: Array<Region> = []
  private size = 0
  private broken = false

  constructor(fd: number) {
    this.fd = fd
  }

  /** Opens a fresh, already unlinked file; `undefined` where there is no tmpfs to put it in. */
  static open(): SharedFile | undefined {
    if (process.platform !== "linux") return undefined
    const path = `${directory}/effect-process-pool-${process.pid}-${++files}`
    let fd: number
    try {
      fd = fs.openSync(path, "wx+", 0o600)
    } catch {
      return undefined
    }
    try {
      fs.unlinkSync(path)
    } catch {
      fs.closeSync(fd)
      return undefined
    }
    return new SharedFile(fd)
  }

  /**
   * Writes a message of {@link sharedThreshold} or more to the file and
   * returns the reference that takes the pipe in its place, or `undefined`
   * when the message should take the pipe itself. A JSON message is written
   * as a frame of its own, `[message]`. `key` names the region for `release`.
   */
  refer(key: number, message: string | Binary): Shared | undefined {
    if (message.length < sharedThreshold) return undefined
    const binary = typeof message === "string" ? new Binary(Buffer.from(`[${message}]`)) : message
    const offset = this.write(key, binary.parts, binary.length)
    return offset === undefined ? undefined : new Shared(binary === message, offset, binary.length)
  }

  /**
   * Writes the bytes of message `id` and returns where, or `undefined` when
   * they should take the pipe: the file is full, or it failed once (a full
   * tmpfs, for one), after which it is no longer used.
   */
  private write(id: number, parts: ReadonlyArray<Uint8Array>, length: number): number | undefined {
    if (this.broken) return undefined
    const offset = this.place(length)
    if (offset === undefined) return undefined
    try {
      let at = offset
      for (const part of parts) {
        for (let written = 0; written < part.byteLength;) {
          written += fs.writeSync(this.fd, part, written, part.byteLength - written, at + written)
        }
        at += part.byteLength
      }
    } catch {
      this.broken = true
      return undefined
    }
    this.insert({ id, offset, end: offset + length })
    this.sentBytes += length
    return offset
  }

  /** Frees the region of message `id`: its reply has come, so the worker has read it. */
  release(id: number): void {
    if (this.regions.length > 0) this.remove(this.regions.findIndex((region) => region.id === id))
  }

  /** Frees the region that starts at `offset`: the reader says it has read it. */
  releaseAt(offset: number): void {
    if (this.regions.length > 0) this.remove(this.regions.findIndex((region) => region.offset === offset))
  }

  private remove(index: number): void {
    const regions = this.regions
    if (index < 0) return
    regions.splice(index, 1)
    if (regions.length === 0 && this.size > shrinkAbove && !this.broken) {
      try {
        fs.ftruncateSync(this.fd, 0)
        this.size = 0
      } catch {
        this.broken = true
      }
    }
  }

  /** Reads `length` bytes at `offset` of the file open as `fd`: the reading side of a shared file. */
  static read(fd: number, offset: number, length: number): Buffer {
    const bytes = Buffer.allocUnsafe(length)
    for (let read = 0; read < length;) {
      const n = fs.readSync(fd, bytes, read, length - read, offset + read)
      if (n === 0) throw new Error(`the shared file ends before ${offset + length} bytes`)
      read += n
    }
    return bytes
  }

  close(): void {
    try {
      fs.closeSync(this.fd)
    } catch {
      // already closed
    }
  }

  /** The lowest offset with room for `length` bytes, or `undefined` past the capacity. */
  private place(length: number): number | undefined {
    let offset = 0
    for (const region of this.regions) {
      if (region.offset - offset >= length) break
      offset = region.end
    }
    if (offset + length > capacity) return undefined
    if (offset + length > this.size) this.size = offset + length
    return offset
  }

  private insert(region: Region): void {
    const regions = this.regions
    let i = regions.length
    while (i > 0 && regions[i - 1].offset > region.offset) i--
    regions.splice(i, 0, region)
  }
}
