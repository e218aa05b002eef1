/**
 * The worker's serve loop in memory: real task contracts and handlers, no
 * process, no pipe. Each test builds a server whose `send` records what it
 * would have written, and feeds it the messages the parent would send.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { ExitKind, FromWorker, type FromWorkerMessage, Message } from "../src/internal/wire/protocol.ts"
import { makeServer, type ServerOptions } from "../src/internal/worker/server.ts"
import * as Task from "../src/Task.ts"
import * as Worker from "../src/Worker.ts"
import { BadItem, Count, FailAfter } from "./fixtures/streams.ts"
import { BinaryEcho, Negative, Point, Square, Traced } from "./fixtures/tasks.ts"
import fixtureWorker from "./fixtures/worker.ts"

/** Waits until the test opens the gate named by its payload, then answers with that name. */
const Hold = Task.make("Hold", { payload: Schema.String, success: Schema.String })

/** Answers after a real sleep of `ms`. */
const Later = Task.make("Later", { payload: Schema.Number, success: Schema.Number })

/** What the handlers did, in order: starts, finalizers, and (see `harness`) writes. */
let events: Array<string> = []
let gates = new Map<string, Deferred.Deferred<void>>()
const gate = (name: string): Deferred.Deferred<void> => {
  let deferred = gates.get(name)
  if (deferred === undefined) {
    deferred = Deferred.makeUnsafe<void>()
    gates.set(name, deferred)
  }
  return deferred
}
const open = (name: string) => Deferred.succeed(gate(name), undefined)

const { handlers } = Worker.handlers(
  // The handlers the process tests use, as they are.
  fixtureWorker.handlers.get(Square._tag)!,
  Hold.handler((name) =>
    Effect.suspend(() => {
      events.push(`start ${name}`)
      return Deferred.await(gate(name))
    }).pipe(
      Effect.as(name),
      Effect.onInterrupt(() => Effect.sync(() => events.push(`finalized ${name}`)))
    )
  ),
  Later.handler((ms) => Effect.as(Effect.sleep(ms), ms)),
  fixtureWorker.handlers.get(Traced._tag)!,
  BinaryEcho.handler((value) => Effect.succeed({ ...value, sum: value.bytes.reduce((a, b) => a + b, 0) })),
  Count.handler((n) => Stream.range(0, n - 1)),
  FailAfter.handler((n) => Stream.concat(Stream.make(1, 2, 3), Stream.fail(new Negative({ n })))),
  BadItem.handler(() => Stream.make(1, 2, "three" as unknown as number, 4))
)

/** A server whose replies are recorded; `flush` notes in `events` when it writes something. */
const harness = (options: Partial<ServerOptions> = {}) => {
  events = []
  gates = new Map()
  const sent: Array<{ readonly message: FromWorkerMessage; readonly binary: boolean | "transfer" }> = []
  const released: Array<number> = []
  let written = 0
  let shutdowns = 0
  const server = makeServer({
    handlers,
    runFork: (effect) => Effect.runFork(effect),
    workerConcurrency: 4,
    maxMemory: 0,
    send: (message, binary) => sent.push({ message, binary }),
    flush: () => {
      if (written === sent.length) return
      written = sent.length
      events.push("flush")
    },
    drained: Effect.void,
    release: (offset) => released.push(offset),
    onShutdown: () => shutdowns++,
    rss: () => 1234,
    ...options
  })
  const messages = (): Array<FromWorkerMessage> => sent.map((s) => s.message)
  const ofKind = (kind: number, id?: number) =>
    messages().filter((message) => message[0] === kind && (id === undefined || message[1] === id))
  /** The Exit message of task `id`, if it has been sent. */
  const exitOf = (id: number) => ofKind(FromWorker.Exit, id)[0]
  /** The values of every Items message of stream `id`, in order. */
  const itemsOf = (id: number) => ofKind(FromWorker.Items, id).flatMap((message) => message[2] as Array<unknown>)
  return {
    server,
    sent,
    released,
    messages,
    ofKind,
    exitOf,
    itemsOf,
    get shutdowns() {
      return shutdowns
    }
  }
}

/** Polls until `predicate` holds, with real sleeps (tests using it run live). */
const until = (what: string, predicate: () => boolean, ms = 5_000): Effect.Effect<void, Error> =>
  Effect.gen(function*() {
    const deadline = Date.now() + ms
    while (!predicate()) {
      if (Date.now() > deadline) return yield* Effect.fail(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep(2)
    }
  })

describe("server", () => {
  describe("Run", () => {
    it.effect("a ready value is answered at once, without a fiber: the encoded success", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.run(1, "Square", 3, 0))
        expect(h.messages()).toEqual([[FromWorker.Exit, 1, ExitKind.Success, 9]])
        expect(h.sent[0].binary).toBe(false)
      }))

    it.effect("a typed failure is encoded with the failure Schema", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.run(2, "Square", -2, 0))
        const exit = h.exitOf(2)
        expect(exit.slice(0, 3)).toEqual([FromWorker.Exit, 2, ExitKind.Failure])
        expect(exit[3]).toMatchObject({ _tag: "Negative", n: -2 })
      }))

    it.effect("a defect keeps its name and message", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.run(3, "Square", 13, 0))
        const exit = h.exitOf(3)
        expect(exit[2]).toBe(ExitKind.Defect)
        expect(exit[3]).toMatchObject({ name: "RangeError", message: "thirteen is unlucky" })
      }))

    it.effect("a tag the module does not serve is NotServed, with no value", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.run(4, "Nope", 1, 0))
        expect(h.messages()).toEqual([[FromWorker.Exit, 4, ExitKind.NotServed]])
      }))

    it.effect("a payload that breaks the payload Schema is PayloadInvalid, with the issue", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.run(5, "Square", "three", 0))
        const exit = h.exitOf(5)
        expect(exit[2]).toBe(ExitKind.PayloadInvalid)
        assert.isString(exit[3])
      }))

    it.live("a task that suspends is answered when its fiber ends", () =>
      Effect.gen(function*() {
        const h = harness()
        h.server.receive(Message.run(6, "Later", 20, 0))
        expect(h.exitOf(6)).toBeUndefined()
        yield* until("the answer", () => h.exitOf(6) !== undefined)
        expect(h.exitOf(6)).toEqual([FromWorker.Exit, 6, ExitKind.Success, 20])
      }))

    it.effect("a binary task's result is sent as binary", () =>
      Effect.sync(() => {
        const h = harness()
        const value = { bytes: new Uint8Array([1, 2, 3]), at: new Date(0), big: 5n, point: new Point({ x: 1, y: 2 }) }
        h.server.receive(Message.run(7, "BinaryEcho", Schema.encodeSync(BinaryEcho.payloadSchema)(value), 0))
        expect(h.exitOf(7)[2]).toBe(ExitKind.Success)
        expect(h.sent[0].binary).toBe(true)
      }))

    it.live("called with the caller's span, the task's span joins its trace", () =>
      Effect.gen(function*() {
        const h = harness()
        h.server.receive(Message.run(8, "Traced", 0, ["trace-1", "span-1", true]))
        yield* until("the answer", () => h.exitOf(8) !== undefined)
        expect(h.exitOf(8)).toEqual([
          FromWorker.Exit,
          8,
          ExitKind.Success,
          { traceId: "trace-1", name: "ProcessPool.task Traced", parentSpanId: "span-1" }
        ])
      }))
  })

  describe("RunBatch", () => {
    it.effect("with every = 2, the first two results go ahead as a part; the final reply holds only the rest", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.runBatch(1, "Square", [1, 2, 3, 4, 5], 0, 2))
        const parts = h.ofKind(FromWorker.BatchPart, 1)
        expect(parts[0].slice(0, 4)).toEqual([FromWorker.BatchPart, 1, 0, [1, 4]])
        for (const part of parts) expect(part[4]).toBeGreaterThanOrEqual(1)
        const final = h.ofKind(FromWorker.BatchValues, 1)
        expect(final).toHaveLength(1)
        // However the next parts were sized, every value arrives once, in order.
        expect([...parts.flatMap((part) => part[3] as Array<unknown>), ...(final[0][2] as Array<unknown>)]).toEqual(
          [1, 4, 9, 16, 25]
        )
        expect(final[0][2]).not.toContain(1)
        expect(h.messages().at(-1)).toBe(final[0])
        // Each part was written before the next item started.
        expect(events.filter((event) => event === "flush").length).toBeGreaterThanOrEqual(parts.length)
      }))

    it.effect("a part holding a failure lists every item's outcome", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.runBatch(2, "Square", [1, -1, 3], 0, 2))
        const [part] = h.ofKind(FromWorker.BatchPart, 2)
        expect(part[2]).toBe(1)
        const items = part[3] as Array<[number, unknown]>
        expect(items[0]).toEqual([ExitKind.Success, 1])
        expect(items[1][0]).toBe(ExitKind.Failure)
        expect(items[1][1]).toMatchObject({ _tag: "Negative", n: -1 })
        expect(h.ofKind(FromWorker.BatchValues, 2)[0][2]).toEqual([9])
      }))

    it.effect("without parts, one reply: the values alone, or every item's outcome", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.runBatch(3, "Square", [1, 2], 0, 0))
        h.server.receive(Message.runBatch(4, "Square", [2, "x", 13], 0, 0))
        expect(h.ofKind(FromWorker.BatchPart)).toEqual([])
        expect(h.ofKind(FromWorker.BatchValues, 3)).toEqual([[FromWorker.BatchValues, 3, [1, 4]]])
        const [, , items] = h.ofKind(FromWorker.BatchExit, 4)[0] as [number, number, Array<[number, unknown]>]
        expect(items.map(([kind]) => kind)).toEqual([ExitKind.Success, ExitKind.PayloadInvalid, ExitKind.Defect])
      }))
  })

  describe("RunStream", () => {
    it.live("window 3: three items, then nothing until Ack, then more, then the Exit", () =>
      Effect.gen(function*() {
        const h = harness()
        h.server.receive(Message.runStream(1, "Count", 10, 0, 3))
        yield* until("three items", () => h.itemsOf(1).length >= 3)
        yield* Effect.sleep(30)
        expect(h.itemsOf(1)).toEqual([0, 1, 2])
        expect(h.exitOf(1)).toBeUndefined()
        h.server.receive(Message.ack(1, 2))
        yield* until("two more", () => h.itemsOf(1).length >= 5)
        yield* Effect.sleep(30)
        expect(h.itemsOf(1)).toEqual([0, 1, 2, 3, 4])
        expect(h.exitOf(1)).toBeUndefined()
        h.server.receive(Message.ack(1, 10))
        yield* until("the end", () => h.exitOf(1) !== undefined)
        expect(h.itemsOf(1)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        expect(h.exitOf(1)).toEqual([FromWorker.Exit, 1, ExitKind.Success, null])
        expect(h.messages().at(-1)).toBe(h.exitOf(1))
      }))

    it.live("a stream that fails sends its items, then the typed failure", () =>
      Effect.gen(function*() {
        const h = harness()
        h.server.receive(Message.runStream(2, "FailAfter", 7, 0, 16))
        yield* until("the end", () => h.exitOf(2) !== undefined)
        expect(h.itemsOf(2)).toEqual([1, 2, 3])
        expect(h.exitOf(2)[2]).toBe(ExitKind.Failure)
        expect(h.exitOf(2)[3]).toMatchObject({ _tag: "Negative", n: 7 })
      }))

    it.live("an item that breaks the success Schema ends the stream: the items before it, then ResultInvalid", () =>
      Effect.gen(function*() {
        const h = harness()
        h.server.receive(Message.runStream(3, "BadItem", 0, 0, 16))
        yield* until("the end", () => h.exitOf(3) !== undefined)
        expect(h.itemsOf(3)).toEqual([1, 2])
        expect(h.exitOf(3)[2]).toBe(ExitKind.ResultInvalid)
      }))

    it.effect("a streaming task whose contract disagrees with the caller's is refused as PayloadInvalid", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.runStream(4, "Square", 2, 0, 4))
        h.server.receive(Message.run(5, "Count", 2, 0))
        expect(h.exitOf(4).slice(0, 3)).toEqual([FromWorker.Exit, 4, ExitKind.PayloadInvalid])
        expect(h.exitOf(4)[3]).toContain("streams for the caller, but not in this worker")
        expect(h.exitOf(5).slice(0, 3)).toEqual([FromWorker.Exit, 5, ExitKind.PayloadInvalid])
        expect(h.exitOf(5)[3]).toContain("streams in this worker, but the caller's contract does not")
      }))
  })

  describe("Interrupt", () => {
    it.live("of a running task: Interrupted, after its finalizer ran", () =>
      Effect.gen(function*() {
        const h = harness()
        h.server.receive(Message.run(1, "Hold", "a", 0))
        yield* until("the start", () => events.includes("start a"))
        h.server.receive(Message.interrupt(1))
        yield* until("the answer", () => h.exitOf(1) !== undefined)
        expect(h.exitOf(1)).toEqual([FromWorker.Exit, 1, ExitKind.Interrupted])
        expect(events).toContain("finalized a")
        // A second request, or one for a task already answered, is ignored.
        h.server.receive(Message.interrupt(1))
        expect(h.ofKind(FromWorker.Exit, 1)).toHaveLength(1)
      }))

    it.live("of a queued task: Interrupted at once, and it never starts", () =>
      Effect.gen(function*() {
        const h = harness({ workerConcurrency: 1 })
        h.server.receive(Message.run(1, "Hold", "a", 0))
        h.server.receive(Message.run(2, "Hold", "b", 0))
        h.server.receive(Message.interrupt(2))
        expect(h.exitOf(2)).toEqual([FromWorker.Exit, 2, ExitKind.Interrupted])
        yield* open("a")
        yield* until("the first answer", () => h.exitOf(1) !== undefined)
        expect(h.exitOf(1)).toEqual([FromWorker.Exit, 1, ExitKind.Success, "a"])
        expect(events).not.toContain("start b")
      }))
  })

  describe("Ping, Release, memory", () => {
    it.effect("Ping is answered at once with Pong and the resident set size", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.ping(7))
        expect(h.messages()).toEqual([[FromWorker.Pong, 7, 1234]])
      }))

    it.effect("Release hands the offset to the entry", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.release(65_536))
        expect(h.released).toEqual([65_536])
        expect(h.messages()).toEqual([])
      }))

    it.effect("past the memory ceiling, a task's end asks once to be recycled", () =>
      Effect.sync(() => {
        const h = harness({ maxMemory: 1000, rss: () => 2000 })
        h.server.receive(Message.run(1, "Square", 2, 0))
        h.server.receive(Message.run(2, "Square", 3, 0))
        expect(h.messages()).toEqual([
          [FromWorker.Exit, 1, ExitKind.Success, 4],
          [FromWorker.Recycle],
          [FromWorker.Exit, 2, ExitKind.Success, 9]
        ])
      }))

    it.effect("under the ceiling, no Recycle", () =>
      Effect.sync(() => {
        const h = harness({ maxMemory: 1000, rss: () => 999 })
        h.server.receive(Message.run(1, "Square", 2, 0))
        expect(h.ofKind(FromWorker.Recycle)).toEqual([])
      }))
  })

  describe("Shutdown", () => {
    it.effect("with nothing running, onShutdown is called at once, and once", () =>
      Effect.sync(() => {
        const h = harness()
        h.server.receive(Message.shutdown)
        h.server.receive(Message.shutdown)
        expect(h.shutdowns).toBe(1)
      }))

    it.live("while a task runs, onShutdown waits for it to end", () =>
      Effect.gen(function*() {
        const h = harness()
        h.server.receive(Message.run(1, "Hold", "a", 0))
        yield* until("the start", () => events.includes("start a"))
        h.server.receive(Message.shutdown)
        yield* Effect.sleep(20)
        expect(h.shutdowns).toBe(0)
        yield* open("a")
        yield* until("the shutdown", () => h.shutdowns > 0)
        expect(h.exitOf(1)).toEqual([FromWorker.Exit, 1, ExitKind.Success, "a"])
        expect(h.shutdowns).toBe(1)
      }))
  })

  describe("concurrency", () => {
    it.live("concurrency 1 runs tasks one at a time, in order, each result written before the next starts", () =>
      Effect.gen(function*() {
        const h = harness({ workerConcurrency: 1 })
        for (const [id, name] of [[1, "a"], [2, "b"], [3, "c"]] as const) {
          h.server.receive(Message.run(id, "Hold", name, 0))
        }
        yield* until("the first start", () => events.includes("start a"))
        yield* Effect.sleep(20)
        expect(events).toEqual(["start a"])
        yield* open("a")
        yield* until("the second start", () => events.includes("start b"))
        yield* open("b")
        yield* until("the third start", () => events.includes("start c"))
        yield* open("c")
        yield* until("the last answer", () => h.exitOf(3) !== undefined)
        expect(events).toEqual(["start a", "flush", "start b", "flush", "start c", "flush"])
        expect(h.ofKind(FromWorker.Exit).map((message) => message[1])).toEqual([1, 2, 3])
      }))

    it.live("concurrency 2 runs two at once; the third waits for a free slot", () =>
      Effect.gen(function*() {
        const h = harness({ workerConcurrency: 2 })
        for (const [id, name] of [[1, "a"], [2, "b"], [3, "c"]] as const) {
          h.server.receive(Message.run(id, "Hold", name, 0))
        }
        yield* until("two starts", () => events.includes("start b"))
        yield* Effect.sleep(20)
        expect(events).toEqual(["start a", "start b"])
        yield* open("b")
        yield* until("the third start", () => events.includes("start c"))
        expect(h.ofKind(FromWorker.Exit).map((message) => message[1])).toEqual([2])
        yield* open("a")
        yield* open("c")
        yield* until("every answer", () => h.ofKind(FromWorker.Exit).length === 3)
      }))
  })
})
