/**
 * Workers served in memory: the pool's client, dispatcher and supervisor
 * against the worker's serve loop (`makeServer`), with every message encoded
 * and decoded as on the wire, and no process at all.
 */
import * as Effect from "effect/Effect"
import type { Spawn, WorkerConnection, WorkerState } from "../src/internal/processes/workerProcess.ts"
import { Binary, decodeBinary } from "../src/internal/wire/binary.ts"
import {
  decodeFromWorker,
  decodeToWorker,
  type FromWorkerMessage,
  Message,
  MessageInvalid
} from "../src/internal/wire/protocol.ts"
import { makeServer } from "../src/internal/worker/server.ts"
import type * as Worker from "../src/Worker.ts"

let nextPid = 0

/** Starts workers that serve `served` in this process. Each gets a negative pid. */
export const memorySpawn = (served: Worker.Handlers<never>, workerConcurrency = 1): Spawn => (events) => {
  let state: WorkerState = "starting"
  let exitCode: number | null = null
  let killReason: string | undefined
  const pid = -(++nextPid)

  const close = (code: number | null) => {
    if (state === "dead") return
    state = "dead"
    exitCode = code
    events.onClose(connection)
  }

  /** The parent's message, through the wire format, to the server. */
  const deliver = (message: string | Binary) =>
    queueMicrotask(() => {
      if (state === "dead") return
      const decoded = decodeToWorker(typeof message === "string" ? JSON.parse(message) : decodeBinary(message.bytes))
      if (decoded instanceof MessageInvalid) throw new Error(decoded.reason)
      server.receive(decoded)
    })

  const server = makeServer({
    handlers: served.handlers,
    runFork: (effect) => Effect.runFork(effect),
    workerConcurrency,
    maxMemory: 0,
    send: (message: FromWorkerMessage, binary: boolean) => {
      const wire = binary ? decodeBinary(Binary.encode(message).bytes) : JSON.parse(JSON.stringify(message))
      queueMicrotask(() => {
        if (state === "dead") return
        const decoded = decodeFromWorker(wire)
        if (decoded instanceof MessageInvalid) throw new Error(decoded.reason)
        events.onMessage(connection, decoded)
      })
    },
    flush: () => {},
    drained: Effect.void,
    release: () => {},
    onShutdown: () => setImmediate(() => close(0)),
    rss: () => 0
  })

  const connection: WorkerConnection = {
    pid,
    get state() {
      return state
    },
    stderr: "",
    get exitCode() {
      return exitCode
    },
    signal: null,
    get killReason() {
      return killReason
    },
    startFailure: undefined,
    partialSince: 0,
    sharedBytes: 0,
    send: (message) => deliver(message),
    sendMessage: (message) => deliver(JSON.stringify(message)),
    shutdown: () => {
      if (state !== "ready") return
      state = "stopping"
      deliver(JSON.stringify(Message.shutdown))
    },
    kill: (reason) => {
      if (state === "dead") return
      killReason ??= reason
      state = "stopping"
      setImmediate(() => close(null))
    }
  }
  setImmediate(() => {
    state = "ready"
    events.onReady(connection)
  })
  return connection
}
