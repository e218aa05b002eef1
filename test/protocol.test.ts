import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import fc from "fast-check"
import { spawn } from "node:child_process"
import type { Socket } from "node:net"
import { Binary, decodeBinary } from "../src/internal/wire/binary.ts"
import { codecFor, Invalid } from "../src/internal/wire/codec.ts"
import {
  decodeFromWorker,
  decodeToWorker,
  FromWorker,
  Message,
  MessageInvalid,
  ToWorker
} from "../src/internal/wire/protocol.ts"
import {
  decodeFrame,
  encodeFrames,
  FrameInvalid,
  FrameReader,
  FrameTooLarge,
  FrameWriter,
  Shared
} from "../src/internal/wire/transport.ts"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import * as Task from "../src/Task.ts"
import { Garbage, Square } from "./fixtures/tasks.ts"
import { fixture, poolLayer, stats } from "./helpers.ts"

const frame = (messages: ReadonlyArray<unknown>): Buffer => encodeFrames([JSON.stringify(messages)])

/** Bytes that break the protocol in the ways that matter: raw noise, bad JSON, wrong shapes, truncation, huge lengths. */
const hostileBytes = (maxFrameSize: number) =>
  fc.oneof(
    fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
    fc.string({ minLength: 1 }).map((text) => encodeFrames([text])),
    fc.jsonValue().filter((v) => !Array.isArray(v)).map((v) => encodeFrames([JSON.stringify(v)])),
    fc.array(fc.jsonValue(), { maxLength: 4 }).map((messages) => frame(messages)),
    fc.tuple(fc.array(fc.jsonValue(), { minLength: 1, maxLength: 4 }), fc.nat()).map(([messages, cut]) => {
      const whole = frame([messages])
      return whole.subarray(0, 1 + (cut % (whole.length - 1)))
    }),
    fc.integer({ min: maxFrameSize + 1, max: 0xffffffff }).map((length) => {
      const header = Buffer.alloc(4)
      header.writeUInt32BE(length)
      return header
    })
  )

describe("framing", () => {
  it("JSON and binary messages split at any points reassemble exactly, in the order they were sent", () =>
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.array(fc.jsonValue(), { maxLength: 5 }), fc.boolean()), { minLength: 1, maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (sent, cuts) => {
          const messages = sent.map(([message]) => message)
          const chunks: Array<Buffer> = []
          const writer = new FrameWriter({ write: (chunk) => chunks.push(Buffer.from(chunk)) }, () => {})
          for (const [message, binary] of sent) {
            writer.send(binary ? Binary.encode(message) : JSON.stringify(message))
          }
          writer.flush()
          const bytes = Buffer.concat(chunks)
          const received: Array<unknown> = []
          const reader = new FrameReader(
            (json) => received.push(...JSON.parse(json)),
            (frame) => received.push(decodeBinary(frame))
          )
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
          let at = 0
          for (const point of [...points, bytes.length]) {
            expect(reader.push(bytes.subarray(at, point))).toBeUndefined()
            at = point
          }
          // V8 keeps -0 where JSON writes 0: compare as JSON.
          expect(JSON.parse(JSON.stringify(received))).toEqual(JSON.parse(JSON.stringify(messages)))
          expect(reader.partialSince).toBe(0)
        }
      )
    ))

  it("an eager writer sends the first message after a quiet tick at once, and packs the rest of the burst", () => {
    const writes: Array<Array<unknown>> = []
    const ticks: Array<() => void> = []
    const writer = new FrameWriter(
      { write: (chunk) => writes.push(JSON.parse(Buffer.from(chunk).subarray(4).toString())) },
      (tick) => ticks.push(tick),
      { eager: true }
    )
    const tick = () => ticks.shift()!()
    writer.send("1")
    expect(writes).toEqual([[1]])
    writer.send("2")
    writer.send("3")
    expect(writes).toEqual([[1]])
    tick()
    expect(writes).toEqual([[1], [2, 3]])
    // Still busy: what is sent before the next tick waits for it.
    writer.send("4")
    expect(writes).toHaveLength(2)
    tick()
    expect(writes).toEqual([[1], [2, 3], [4]])
    // A tick with nothing to write: the next message goes out at once again.
    tick()
    expect(ticks).toHaveLength(0)
    writer.send("5")
    expect(writes).toEqual([[1], [2, 3], [4], [5]])
  })

  it("any bytes at all: the reader never throws, and a huge announced length is refused before it is buffered", () =>
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.integer({ min: 8, max: 64 }), (bytes, max) => {
        const reader = new FrameReader(() => {}, () => {}, max)
        const result = reader.push(Buffer.from(bytes))
        if (result instanceof FrameTooLarge) expect(result.size).toBeGreaterThan(max)
        else if (result !== undefined) assert.instanceOf(result, FrameInvalid)
      })
    ))

  it("shared frames are read from the shared file and arrive in order with the rest", () =>
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.array(fc.jsonValue(), { maxLength: 5 }),
            fc.constantFrom("json", "binary", "shared", "sharedJson")
          ),
          { minLength: 1, maxLength: 20 }
        ),
        fc.array(fc.nat(), { maxLength: 10 }),
        (sent, cuts) => {
          const chunks: Array<Buffer> = []
          const file: Array<Buffer> = []
          let fileSize = 0
          const writer = new FrameWriter({ write: (chunk) => chunks.push(Buffer.from(chunk)) }, () => {})
          for (const [message, how] of sent) {
            if (how === "json") writer.send(JSON.stringify(message))
            else if (how === "binary") writer.send(Binary.encode(message))
            else {
              // What the supervisor does: the bytes go to the file, a reference to the pipe.
              const bytes = how === "shared"
                ? Binary.encode(message).bytes
                : Buffer.from(`[${JSON.stringify(message)}]`)
              writer.send(new Shared(how === "shared", fileSize, bytes.length))
              file.push(bytes)
              fileSize += bytes.length
            }
          }
          writer.flush()
          const whole = Buffer.concat(file)
          const bytes = Buffer.concat(chunks)
          const received: Array<unknown> = []
          const reader = new FrameReader(
            (json) => received.push(...JSON.parse(json)),
            (frame) => received.push(decodeBinary(frame)),
            undefined,
            (offset, length) => Buffer.from(whole.subarray(offset, offset + length))
          )
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
          let at = 0
          for (const point of [...points, bytes.length]) {
            expect(reader.push(bytes.subarray(at, point))).toBeUndefined()
            at = point
          }
          expect(JSON.parse(JSON.stringify(received))).toEqual(JSON.parse(JSON.stringify(sent.map(([m]) => m))))
        }
      )
    ))

  it("binary messages carry large arrays beside the serialized head, as views, of every type", () => {
    const big = new Uint8Array(70_000).map((_, i) => i % 251)
    const floats = new Float64Array(10_000).map((_, i) => i / 3)
    const message = {
      big,
      again: big,
      floats,
      shorts: new Int16Array(40_000).map((_, i) => i - 20_000),
      longs: new BigInt64Array(9_000).map((_, i) => BigInt(i) * -3n),
      buffer: Buffer.alloc(100_000, 7),
      small: new Uint8Array([1, 2, 3]),
      view: new DataView(new ArrayBuffer(80_000)),
      nested: [{ at: new Date(5), n: 2n ** 70n, map: new Map([[1, "a"]]) }]
    }
    const binary = Binary.encode(message)
    // The large arrays are not copied into the head: they are parts of their own.
    for (const array of [big, floats, message.buffer]) {
      expect(binary.parts.some((part) => part.buffer === array.buffer && part.byteOffset === array.byteOffset)).toBe(
        true
      )
    }
    expect(binary.parts.some((part) => part.buffer === message.small.buffer)).toBe(false)
    for (const shift of [0, 1, 3]) {
      // Wherever the message lands in memory, even misaligned for a Float64Array.
      const region = Buffer.concat([Buffer.alloc(shift), binary.bytes]).subarray(shift)
      const decoded = decodeBinary(region) as typeof message
      expect(decoded.big).toEqual(big)
      expect(decoded.again).toBe(decoded.big)
      expect(decoded.floats).toEqual(floats)
      expect(decoded.shorts).toEqual(message.shorts)
      expect(decoded.longs).toEqual(message.longs)
      assert.isTrue(Buffer.isBuffer(decoded.buffer))
      expect(decoded.buffer.equals(message.buffer)).toBe(true)
      expect(decoded.small).toEqual(message.small)
      expect(decoded.view.byteLength).toBe(80_000)
      expect(decoded.nested[0].n).toBe(2n ** 70n)
      expect(decoded.nested[0].map.get(1)).toBe("a")
      if (shift === 0) expect(decoded.big.buffer).toBe(region.buffer)
    }
  })

  it("a binary task's plain payload crosses as the caller's own value: its arrays stay dense, not rebuilt", () => {
    const payload = Schema.Struct({
      items: Schema.Array(Schema.Struct({ id: Schema.Number, tags: Schema.Array(Schema.String) })),
      bytes: Schema.Uint8Array
    })
    const binary = codecFor(Task.make("PlainBinary", { payload, serialization: "binary" }))
    const json = codecFor(Task.make("PlainJson", { payload }))
    const value = { items: [{ id: 1, tags: ["a", "b"] }, { id: 2, tags: [] }], bytes: new Uint8Array([1, 2, 3]) }
    expect(binary.encodePayload(value)).toBe(value)
    expect(binary.decodePayload(value)).toBe(value)
    // V8 writes a dense array as one run of values, and an array the codec builds with `new Array(n)` index by index.
    const rebuilt = {
      ...value,
      items: value.items.map((item) => ({ ...item, tags: Object.assign(new Array(item.tags.length), item.tags) }))
    }
    expect(Binary.encode(value).length).toBeLessThan(Binary.encode(rebuilt).length)
    // A JSON task carries the bytes as base64: its codec still builds the encoded value.
    expect(json.encodePayload(value)).toStrictEqual({ ...value, bytes: "AQID" })
    // Anything else than what the Schema says still goes through the codec, which refuses it or rebuilds it.
    assert.instanceOf(binary.encodePayload({ ...value, bytes: [1, 2, 3] }), Invalid)
    assert.instanceOf(binary.encodePayload({ ...value, bytes: "AQID" }), Invalid)
    expect(binary.encodePayload({ ...value, extra: 1 })).toStrictEqual(value)
  })

  it("a malformed binary message throws, and never reaches outside its bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        try {
          decodeBinary(Buffer.from(bytes))
        } catch (error) {
          assert.instanceOf(error, Error)
        }
      })
    )
    const whole = Binary.encode({ big: new Uint8Array(70_000) }).bytes
    expect(() => decodeBinary(whole.subarray(0, whole.length - 1))).toThrow("outside")
  })

  it("a shared frame that cannot be followed is refused", () => {
    const ref = encodeFrames([new Shared(true, 0, 16)])
    // No shared file on this side.
    assert.instanceOf(new FrameReader(() => {}, () => {}).push(ref), FrameInvalid)
    // The file cannot be read there.
    const failing = new FrameReader(() => {}, () => {}, undefined, () => {
      throw new Error("EOF")
    })
    const error = failing.push(ref)
    assert.instanceOf(error, FrameInvalid)
    expect(error.message).toContain("EOF")
    // Beyond the maximum frame size.
    assert.instanceOf(new FrameReader(() => {}, () => {}, 8, () => Buffer.alloc(16)).push(ref), FrameTooLarge)
    // A body of the wrong size, and an offset that is not a position.
    const wrongSize = Buffer.from(ref)
    wrongSize.writeUInt32BE((0x40000000 | 12) >>> 0, 0)
    assert.instanceOf(
      new FrameReader(() => {}, () => {}, undefined, () => Buffer.alloc(16)).push(wrongSize),
      FrameInvalid
    )
    const nowhere = Buffer.from(ref)
    nowhere.writeDoubleBE(-1, 5)
    assert.instanceOf(
      new FrameReader(() => {}, () => {}, undefined, () => Buffer.alloc(16)).push(nowhere),
      FrameInvalid
    )
  })

  it("a frame's messages are read with the decoder of their direction, in order, up to the first bad one", () => {
    const toWorker: Array<unknown> = []
    const run = Message.run(1, "square", 3, 0)
    expect(decodeFrame(JSON.stringify([run, Message.ping(2)]), "parent", (m) => void toWorker.push(m))).toBeUndefined()
    expect(decodeFrame(Binary.encode(Message.ack(1, 4)).bytes, "parent", (m) => void toWorker.push(m)))
      .toBeUndefined()
    expect(toWorker).toEqual([run, Message.ping(2), Message.ack(1, 4)])

    const fromWorker: Array<unknown> = []
    const receive = (m: unknown) => void fromWorker.push(m)
    // A worker's message is no message from the parent; a bad message ends the frame, after those before it.
    expect(decodeFrame(JSON.stringify([Message.pong(1, 0)]), "parent", receive)?.reason).toContain("from the parent")
    const invalid = decodeFrame(JSON.stringify([Message.exit(1, 0, 9), [99], Message.recycle]), "worker", receive)
    assert.instanceOf(invalid, MessageInvalid)
    expect(invalid.reason).toContain("from the worker")
    expect(fromWorker).toEqual([Message.exit(1, 0, 9)])
    expect(decodeFrame("[1,", "worker", receive)?.reason).toBe("a frame from the worker is not JSON")
    expect(decodeFrame("{}", "parent", receive)?.reason).toBe("a frame from the parent is not an array")
    expect(decodeFrame(Buffer.from([0, 0, 0, 9]), "worker", receive)?.reason)
      .toBe("a binary frame from the worker does not deserialize")

    // `receive` stops the frame by returning false.
    const read: Array<unknown> = []
    const packed = JSON.stringify([Message.recycle, Message.pong(1, 0), Message.pong(2, 0)])
    expect(decodeFrame(packed, "worker", (m) => read.push(m) < 2)).toBeUndefined()
    expect(read).toEqual([Message.recycle, Message.pong(1, 0)])
  })
})

/** Starts a bare worker process on the main fixture, and resolves once it said Ready. */
const startWorker = (maxFrameSize: number) =>
  Effect.callback<{ child: ReturnType<typeof spawn>; channel: Socket; messages: Array<Array<unknown>> }, Error>(
    (resume) => {
      const workerMain = new URL("../src/internal/worker/main.ts", import.meta.url).pathname
      const options = JSON.stringify({ concurrency: 1, maxFrameSize, maxMemory: 0 })
      const child = spawn(process.execPath, [workerMain, fixture("worker.ts").href, options], {
        stdio: ["ignore", "ignore", "pipe", "pipe"]
      })
      const channel = child.stdio[3] as Socket
      const messages: Array<Array<unknown>> = []
      const reader = new FrameReader((json) => {
        messages.push(...JSON.parse(json))
        if (messages[0]?.[0] === FromWorker.Ready) resume(Effect.succeed({ child, channel, messages }))
      }, () => {})
      channel.on("data", (chunk: Buffer) => reader.push(chunk))
      channel.on("error", () => {})
      child.on("exit", (code) => resume(Effect.fail(new Error(`the worker exited with ${code} before it was ready`))))
    }
  )

describe("fuzzing the worker's end", () => {
  it.live(
    "hostile frames from the parent: the worker answers or exits with a protocol error, never hangs",
    () =>
      Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(hostileBytes(4096), async (bytes) => {
            const { channel, child, messages } = await Effect.runPromise(startWorker(4096))
            let stderr = ""
            child.stderr!.on("data", (chunk) => (stderr += chunk))
            const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
            try {
              channel.write(bytes)
              channel.write(frame([[ToWorker.Ping, 7]]))
              const answered = new Promise<"pong">((resolve) => {
                const check = setInterval(() => {
                  if (messages.some((m) => m[0] === FromWorker.Pong && m[1] === 7)) {
                    clearInterval(check)
                    resolve("pong")
                  }
                }, 10)
                child.on("exit", () => clearInterval(check))
              })
              const first = await Promise.race([answered, exited, delay(3_000, "silent" as const)])
              if (first === "silent") {
                // Waiting on the rest of a truncated frame is fine, as long as closing the pipe ends it.
                channel.end()
                const code = await Promise.race([exited, delay(3_000, "still running" as const)])
                expect(code).not.toBe("still running")
              } else if (first !== "pong") {
                expect(first).not.toBe(0)
                expect(stderr).toContain("protocol error")
              }
            } finally {
              child.kill("SIGKILL")
            }
          }),
          { numRuns: 15 }
        )
      ),
    { timeout: 120_000 }
  )
})

describe("fuzzing the parent's end", () => {
  it.live(
    "hostile bytes from a worker: the task ends in a result or a typed error, and the pool goes on",
    () =>
      Effect.gen(function*() {
        const pool = yield* ProcessPool.ProcessPool
        const outcomes = { success: 0, crashed: 0 }
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(hostileBytes(64 * 1024), async (bytes) => {
              const exit = await Effect.runPromise(Effect.exit(pool.submit(Garbage, bytes.toString("base64"))))
              if (Exit.isSuccess(exit)) {
                outcomes.success++
              } else {
                const error = Cause.squash(exit.cause)
                assert(PoolError.isPoolError(error), `not a pool error: ${String(error)}`)
                outcomes.crashed++
              }
              expect(await Effect.runPromise(pool.submit(Square, 3))).toBe(9)
            }),
            { numRuns: 25 }
          )
        )
        expect(outcomes.success + outcomes.crashed).toBe(25)
        expect((yield* stats).workers.length).toBe(1)
      }).pipe(
        Effect.provide(poolLayer({ size: 1, maxFrameSize: 64 * 1024, heartbeatInterval: 50, hangTimeout: 500 }))
      ),
    { timeout: 120_000 }
  )
})

describe("log and metric messages", () => {
  it("well-formed ones are read as themselves; malformed ones are protocol errors", () => {
    const good = [
      Message.log(3, "Info", ["hello", 1], 1_700_000_000_000, { a: "b" }, [["span", 1_700_000_000_000]], 0),
      Message.log(0, "Error", [], 1, 0, 0, { name: "Error", message: "boom" }),
      Message.metrics([[1, 5, "Counter", "jobs", 0, {}], [1, 2]]),
      Message.metrics([[2, [[1, 10], [1, 2], 3, 12, 1, 9], "Histogram", "size", "sizes", { k: "v" }]]),
      Message.metrics([[3, [["even", 2]], "Frequency", "kind", 0, {}], [4, 1.5, "Gauge", "g", 0, {}]])
    ]
    for (const message of good) expect(decodeFromWorker(JSON.parse(JSON.stringify(message)))).toEqual(message)
    const bad = [
      [FromWorker.Log, 1, "Loud", [], 0, 0, 0, 0],
      [FromWorker.Log, 1, "Info", "not parts", 0, 0, 0, 0],
      [FromWorker.Log, 1, "Info", [], "noon", 0, 0, 0],
      [FromWorker.Log, 1, "Info", [], 0, [1], 0, 0],
      [FromWorker.Log, 1, "Info", [], 0, 0, [["span"]], 0],
      [FromWorker.Metrics, "none"],
      [FromWorker.Metrics, [[1]]],
      [FromWorker.Metrics, [[1, "five"]]],
      [FromWorker.Metrics, [[1, 5, "Summary", "s", 0, {}]]],
      [FromWorker.Metrics, [[1, 5, "Counter", "c", 0, { n: 1 }]]],
      [FromWorker.Metrics, [[1, [[1, 2], [1], 1, 1, 1, 1], "Histogram", "h", 0, {}]]]
    ]
    for (const message of bad) assert.instanceOf(decodeFromWorker(message), MessageInvalid)
    expect(decodeToWorker([ToWorker.LogLevel, 4, "Debug"])).toEqual(Message.logLevel(4, "Debug"))
    assert.instanceOf(decodeToWorker([ToWorker.LogLevel, 4, "Chatty"]), MessageInvalid)
    assert.instanceOf(decodeToWorker([ToWorker.LogLevel, "4", "Debug"]), MessageInvalid)
  })

  it.live("a metric update for a series the worker never described is a protocol error: the worker is replaced", () =>
    Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      const [before] = (yield* stats).workers
      const exit = yield* Effect.exit(pool.submit(Garbage, frame([Message.metrics([[7, 1]])]).toString("base64")))
      assert(Exit.isFailure(exit))
      const error = Cause.squash(exit.cause)
      assert.instanceOf(error, PoolError.WorkerCrashed)
      expect(error.reason).toContain("never described")
      expect(yield* pool.submit(Square, 3)).toBe(9)
      expect((yield* stats).workers[0].pid).not.toBe(before.pid)
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))
})

const delay = <A>(ms: number, value: A) => new Promise<A>((resolve) => setTimeout(() => resolve(value), ms))
