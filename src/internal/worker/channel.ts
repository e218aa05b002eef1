/**
 * The worker's end of its channel to the parent: fd 3 of a worker process,
 * or the port of a worker thread. The entry (main.ts) serves tasks the same
 * way over either; only how frames cross differs.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as net from "node:net"
import type { MessagePort } from "node:worker_threads"
import { framePort, receiveFrame } from "../wire/port.ts"
import { SharedFile } from "../wire/sharedFile.ts"
import { FrameReader, FrameWriter } from "../wire/transport.ts"
import type { WorkerOptions } from "./main.ts"

/** @internal */
export interface Channel {
  /** Where messages for the parent are queued: every message of a tick goes out together. */
  readonly writer: FrameWriter
  /** Where large results go (fd 5 of a process with shared files): written at once. */
  readonly sharedOut: SharedFile | undefined
  /** Completes once everything written has left this worker. */
  readonly drained: Effect.Effect<void>
  /** Hands every frame from the parent to `onFrame`, and a stream that cannot be read on to `onBroken`. */
  listen(
    onFrame: (frame: string | Buffer, apart?: ReadonlyArray<Uint8Array>) => void,
    onBroken: (reason: string) => void
  ): void
  /** Ends the channel once what was written has left, and then the worker. */
  end(): void
}

/** A worker process's channel: length-prefixed frames on fd 3, large ones through the shared files (fds 4, 5). */
export const processChannel = (options: WorkerOptions): Channel => {
  const socket = new net.Socket({ fd: 3, readable: true, writable: true })
  // The pipe closes when the parent exits or is killed: never outlive it.
  socket.on("end", () => process.exit(0))
  socket.on("error", () => process.exit(0))
  return {
    // Eager: a result after a pause goes out at once, not a tick later (see FrameWriter).
    writer: new FrameWriter(socket, setImmediate, { eager: true }),
    sharedOut: options.shared === true ? new SharedFile(5) : undefined,
    /**
     * Not by the "drain" event: a stream emits it only after a write that
     * passed its high-water mark, and bytes still queued below it (the pipe
     * full while the parent is busy) would wait for it forever. An empty
     * write's callback comes once every write before it is done.
     */
    drained: Effect.callback<void>((resume) => {
      if (socket.writableLength === 0) return resume(Effect.void)
      socket.write(new Uint8Array(0), () => resume(Effect.void))
    }),
    listen: (onFrame, onBroken) => {
      const reader = new FrameReader(
        onFrame,
        onFrame,
        options.maxFrameSize,
        // Payloads the parent wrote to the shared file, fd 4.
        options.shared === true ? (offset, length) => SharedFile.read(4, offset, length) : undefined
      )
      socket.on("data", (chunk: Buffer) => {
        const error = reader.push(chunk)
        if (error !== undefined) onBroken(`protocol error from the parent: ${error.message}`)
      })
    },
    end: () => socket.end(() => process.exit(0))
  }
}

/**
 * A worker thread's channel: each frame one message of its port. A message
 * is handed to the port when sent, so nothing waits to drain; the thread
 * ends when its parent terminates it, or with the parent's process.
 */
export const threadChannel = (port: MessagePort): Channel => ({
  writer: new FrameWriter(framePort(port), setImmediate, { eager: true }),
  sharedOut: undefined,
  drained: Effect.void,
  listen: (onFrame, onBroken) => {
    port.on("message", (data: unknown) => {
      if (!receiveFrame(data, onFrame)) onBroken("protocol error from the parent: a message that is no frame")
    })
  },
  end: () => process.exit(0)
})
