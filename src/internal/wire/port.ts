/**
 * Frames between threads: a worker thread and its parent exchange the same
 * messages and frames as a worker process and its parent, each frame one
 * message of a `MessagePort`, which needs no length prefix and no reader.
 *
 * - A JSON frame crosses as its text. Posting text beats posting the same
 *   messages as objects, which the port would clone one by one: a round trip
 *   of one small message per post measured 0.54M against 0.43M messages/s,
 *   and batches of 16 or more measured the same.
 * - A binary frame crosses as one buffer of its own, moved, never cloned.
 * - A binary frame of a task declared with `transfer` crosses as its head and
 *   each large byte array apart, the arrays moved, never copied: the message
 *   took them from the sender when it was encoded (see `Binary.encode`), and
 *   once posted it cannot be sent again (`Binary.moved`).
 *
 * @internal
 */
import { Binary } from "./binary.ts"
import type { FramePort } from "./transport.ts"

/** What a frame can be posted to: a `MessagePort`, or a thread's `Worker`. @internal */
export interface Poster {
  postMessage(value: unknown, transfer?: ReadonlyArray<ArrayBuffer>): void
}

/** Posts each frame a `FrameWriter` gives it. @internal */
export const framePort = (target: Poster): FramePort => ({
  post: (frame) => {
    if (typeof frame === "string") return target.postMessage(frame)
    if (frame.transfer && frame.attached.length > 0) return postApart(target, frame)
    // Every byte is written below: not zeroed first, which cost 90 µs a MiB. Never from Node's shared pool,
    // whose memory cannot be moved.
    const bytes = Buffer.allocUnsafeSlow(frame.length)
    let at = 0
    for (const part of frame.parts) {
      bytes.set(part, at)
      at += part.byteLength
    }
    target.postMessage(bytes, [bytes.buffer])
  }
})

/** Posts a binary frame's head and its arrays apart, the arrays (the message's own: see `Binary.encode`) moved. */
const postApart = (target: Poster, frame: Binary): void => {
  // The head is the first two parts: the length prefix and the serialized head.
  const head = new Uint8Array(frame.parts[0].byteLength + frame.parts[1].byteLength)
  head.set(frame.parts[0], 0)
  head.set(frame.parts[1], frame.parts[0].byteLength)
  const moved: Array<ArrayBuffer> = [head.buffer]
  for (const array of frame.attached) moved.push(array.buffer as ArrayBuffer)
  frame.moved = true
  target.postMessage([head, ...frame.attached], moved)
}

/**
 * Reads one message of a port as a frame, and hands it to `onFrame`: text as
 * it is, bytes as a `Buffer` over them, and a head with its arrays apart as
 * the head and the arrays. False for anything else, which is not a frame.
 *
 * @internal
 */
export const receiveFrame = (
  data: unknown,
  onFrame: (frame: string | Buffer, apart?: ReadonlyArray<Uint8Array>) => void
): boolean => {
  if (typeof data === "string") onFrame(data)
  else if (data instanceof Uint8Array) onFrame(Buffer.from(data.buffer, data.byteOffset, data.byteLength))
  else if (Array.isArray(data) && data.length > 1 && data.every((part) => part instanceof Uint8Array)) {
    const head = data[0] as Uint8Array
    onFrame(Buffer.from(head.buffer, head.byteOffset, head.byteLength), data.slice(1))
  } else return false
  return true
}
