/**
 * Workers served in the caller's process, for `ProcessPool.layerTest`: the
 * local pool's dispatcher and supervisor against the worker's own serve loop
 * (worker/server.ts), every message encoded and decoded as on the wire, and
 * no process at all. The handlers' services are built once, as a worker
 * builds them; their log lines and metrics reach the pool as a worker's do.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as References from "effect/References"
import type * as Scope from "effect/Scope"
import { WorkerStartError } from "../../PoolError.ts"
import * as Worker from "../../Worker.ts"
import { moduleUrl } from "../options.ts"
import { KillReason } from "../processes/killReason.ts"
import type { Spawn, WorkerConnection, WorkerState } from "../processes/workerProcess.ts"
import { Binary, type BinaryMode } from "../wire/binary.ts"
import { FromWorker, type FromWorkerMessage, Message } from "../wire/protocol.ts"
import { decodeFrame } from "../wire/transport.ts"
import { makeServer } from "../worker/server.ts"
import { forkTask, ForwardingRegistry, makePipeLogger } from "../worker/telemetry.ts"

let nextPid = 0

/**
 * Builds the services of `served` in `scope`, as a worker does when it
 * starts, and gives what starts its workers: each in this process, with a
 * pid below 0. A layer that fails is the pool's `WorkerStartError`.
 *
 * @internal
 */
export const makeMemorySpawn = Effect.fnUntraced(function*(
  served: Worker.Handlers<never>,
  options: { readonly workerConcurrency: number; readonly logLevel: LogLevel.LogLevel },
  scope: Scope.Scope
) {
  // One registry and one logger per worker, as in a process; the services are shared, built once.
  const built = served.layer === undefined
    ? Exit.succeed(Context.empty())
    : yield* Effect.exit(Layer.buildWithScope(served.layer, scope))
  if (Exit.isFailure(built)) {
    return yield* new WorkerStartError({
      message: `The services of the worker module failed to build:\n${Cause.pretty(built.cause)}`,
      stderr: ""
    })
  }
  const services = built.value as Context.Context<never>
  const spawn: Spawn = (events) => {
    let state: WorkerState = "starting"
    let exitCode: number | null = null
    let killReason: WorkerConnection["killReason"]
    const pid = -(++nextPid)

    const close = (code: number | null) => {
      if (state === "dead") return
      state = "dead"
      exitCode = code
      events.onClose(connection)
    }

    /** The parent's message, in a frame of its own, read as the worker reads one. */
    const deliver = (message: string | Binary) =>
      queueMicrotask(() => {
        if (state === "dead") return
        const invalid = decodeFrame(
          typeof message === "string" ? `[${message}]` : message.bytes,
          "parent",
          server.receive
        )
        // As a worker process would: a message it cannot read ends it, never the caller's test.
        if (invalid !== undefined) connection.kill(KillReason.protocol(invalid.reason))
      })

    /** The server's message, in a frame of its own, read as the parent reads one. */
    const sendNow = (message: FromWorkerMessage, binary: BinaryMode) => {
      const frame = binary ? Binary.encode(message).bytes : `[${JSON.stringify(message)}]`
      queueMicrotask(() => {
        if (state === "dead") return
        const invalid = decodeFrame(frame, "worker", receive)
        if (invalid !== undefined) connection.kill(KillReason.protocol(invalid.reason))
      })
    }
    const receive = (message: FromWorkerMessage): void => events.onMessage(connection, message)

    const registry = new ForwardingRegistry()
    const context = Context.merge(
      Context.make(Metric.MetricRegistry, registry as Metric.MetricRegistry).pipe(
        Context.add(References.CurrentLoggers, new Set([makePipeLogger((message) => sendNow(message, false))])),
        Context.add(References.MinimumLogLevel, options.logLevel)
      ),
      services
    )
    const server = makeServer({
      handlers: served.handlers,
      runFork: forkTask(context),
      workerConcurrency: options.workerConcurrency,
      maxMemory: 0,
      send: (message, binary) => {
        // Metric updates go ahead of the next answer, as a worker sends them.
        if (registry.dirty && message[0] !== FromWorker.Log) {
          const metrics = registry.take(context)
          if (metrics !== undefined) sendNow(metrics, false)
        }
        sendNow(message, binary)
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
        // Not started yet: it has nothing to finish.
        if (state === "starting") return close(0)
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
      // Killed or stopped before it was ready: it never becomes ready.
      if (state !== "starting") return
      state = "ready"
      events.onReady(connection)
    })
    return connection
  }
  return spawn
})

/**
 * The handlers a `layerTest` serves: the given `Worker.handlers(...)` value,
 * or the default export of the worker module, imported here as a worker
 * would import it.
 *
 * @internal
 */
export const loadHandlers = (worker: string | URL | Worker.Handlers<never>) =>
  Effect.gen(function*() {
    if (Worker.isHandlers(worker)) return worker as Worker.Handlers<never>
    const url = moduleUrl(worker)
    const loaded = yield* Effect.tryPromise({
      try: () => import(url) as Promise<{ readonly default?: unknown }>,
      catch: (error) =>
        new WorkerStartError({
          message: `The worker module ${url} threw while it was imported:\n${
            error instanceof Error ? (error.stack ?? error.message) : String(error)
          }`,
          stderr: ""
        })
    })
    if (!Worker.isHandlers(loaded.default)) {
      return yield* new WorkerStartError({
        message: `The worker module ${url} has no Worker.handlers(...) default export.`,
        stderr: ""
      })
    }
    return loaded.default as Worker.Handlers<never>
  })
