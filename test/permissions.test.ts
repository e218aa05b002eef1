/**
 * Workers under Node's permission model (`permissions`), and the limits a
 * pool sets on each worker (`maxWorkerHeap`, `maxCpuTime`): real processes,
 * each check against a pool without the option first, so that each can fail.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { Fill, Pid, ReadFile, Rest, Shell, Spin, WriteFile } from "./fixtures/untrusted.ts"
import { fixture, isAlive, tempFile, workerPids } from "./helpers.ts"

const worker = fixture("untrusted.ts")

const pool = (options: Partial<ProcessPool.Options> = {}) =>
  ProcessPool.layer({ worker, size: 1, inheritStderr: false, ...options })

/** The defect a task died with, or undefined when it did not die. */
const defectOf = <A, E>(exit: Exit.Exit<A, E>): Record<string, unknown> | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const defect = exit.cause.reasons.find(Cause.isDieReason)
  return defect === undefined ? undefined : defect.defect as Record<string, unknown>
}

/** A directory of its own under the temp dir, outside the repository, with `secret.txt` in it. */
const outside = () => {
  const dir = path.dirname(tempFile("secret.txt"))
  fs.writeFileSync(path.join(dir, "secret.txt"), "secret")
  return dir
}

/** A link to `target`, in a directory of its own. */
const linkTo = (target: string): string => {
  const link = path.join(path.dirname(tempFile("link")), "link")
  fs.symlinkSync(target, link)
  return link
}

/** Runs `body` in a pool of one worker, then checks that the worker is gone once the pool is. */
const inPool = <A, E>(options: Partial<ProcessPool.Options>, body: Effect.Effect<A, E, ProcessPool.ProcessPool>) =>
  Effect.gen(function*() {
    let pids: ReadonlyArray<number> = []
    const result = yield* Effect.provide(
      Effect.tap(body, () => Effect.map(workerPids, (seen) => void (pids = seen))),
      pool(options)
    )
    // A thread's pid is its threadId: it has no process of its own.
    if (options.isolation !== "thread") { for (const pid of pids) expect(isAlive(pid)).toBe(false) }
    return result
  })

describe("permissions", () => {
  it.live(
    "a handler that reads a file it was not allowed is refused, and its worker goes on",
    () =>
      Effect.gen(function*() {
        const dir = outside()
        const secret = path.join(dir, "secret.txt")
        // Without the option, the same handler reads it.
        expect(yield* inPool({}, ProcessPool.submit(ReadFile, secret))).toBe("secret")
        yield* inPool(
          { permissions: {} },
          Effect.gen(function*() {
            const first = yield* ProcessPool.submit(Pid, undefined)
            const defect = defectOf(yield* Effect.exit(ProcessPool.submit(ReadFile, secret)))
            expect(defect?.code).toBe("ERR_ACCESS_DENIED")
            expect(defect?.permission).toBe("FileSystemRead")
            // The same worker serves the next task.
            expect(yield* ProcessPool.submit(Pid, undefined)).toBe(first)
          })
        )
        // A grant of the program's own (NODE_OPTIONS here) does not reach confined workers: Node would add it up.
        const widened = defectOf(
          yield* inPool(
            { permissions: {}, env: { ...process.env, NODE_OPTIONS: "--allow-fs-read=*" } },
            Effect.exit(ProcessPool.submit(ReadFile, secret))
          )
        )
        expect(widened?.code).toBe("ERR_ACCESS_DENIED")
        // Listed, it may be read.
        expect(yield* inPool({ permissions: { allowFsRead: [dir] } }, ProcessPool.submit(ReadFile, secret))).toBe(
          "secret"
        )
      }),
    60_000
  )

  it.live("a handler that writes outside its allowance is refused; inside it, it writes", () =>
    Effect.gen(function*() {
      const dir = outside()
      const allowed = path.dirname(tempFile("x"))
      const target = path.join(dir, "written.txt")
      yield* inPool(
        { permissions: { allowFsWrite: [allowed] } },
        Effect.gen(function*() {
          const defect = defectOf(yield* Effect.exit(ProcessPool.submit(WriteFile, { path: target, text: "x" })))
          expect(defect?.code).toBe("ERR_ACCESS_DENIED")
          expect(defect?.permission).toBe("FileSystemWrite")
          expect(fs.existsSync(target)).toBe(false)
          yield* ProcessPool.submit(WriteFile, { path: path.join(allowed, "ok.txt"), text: "ok" })
        })
      )
      expect(fs.readFileSync(path.join(allowed, "ok.txt"), "utf8")).toBe("ok")
      // Without the option, the first write goes through.
      yield* inPool({}, ProcessPool.submit(WriteFile, { path: target, text: "x" }))
      expect(fs.existsSync(target)).toBe(true)
    }), 60_000)

  it.live("a handler that starts a process is refused unless allowChildProcess", () =>
    Effect.gen(function*() {
      const defect = defectOf(yield* inPool({ permissions: {} }, Effect.exit(ProcessPool.submit(Shell, "echo hi"))))
      expect(defect?.code).toBe("ERR_ACCESS_DENIED")
      expect(yield* inPool({ permissions: { allowChildProcess: true } }, ProcessPool.submit(Shell, "echo hi"))).toBe(
        "hi\n"
      )
      expect(yield* inPool({}, ProcessPool.submit(Shell, "echo hi"))).toBe("hi\n")
    }), 60_000)

  it.effect("bad permissions, and permissions or maxCpuTime on threads, are refused at once", () =>
    Effect.gen(function*() {
      const refused = (options: Partial<ProcessPool.Options>) => Effect.flip(Effect.scoped(Layer.build(pool(options))))
      const cases: ReadonlyArray<[Partial<ProcessPool.Options>, string]> = [
        [{ permissions: { allowFsRead: "/srv" } as never }, "permissions"],
        [{ permissions: { allowNet: true } as never }, "permissions"],
        [{ permissions: { allowChildProcess: "yes" } as never }, "permissions"],
        [{ isolation: "thread", permissions: {} }, "permissions"],
        [{ isolation: "thread", maxCpuTime: "1 second" }, "maxCpuTime"],
        [{ maxCpuTime: 0 }, "maxCpuTime"],
        [{ maxCpuTime: "1 second", workerConcurrency: 2 }, "maxCpuTime"],
        [{ maxWorkerHeap: 1024 }, "maxWorkerHeap"],
        // Confined workers could plant code where every pool's workers load it from.
        [{ permissions: { allowFsWrite: [os.tmpdir()] } }, "permissions"],
        [{ permissions: { allowFsWrite: [outside()] }, bundle: "BUNDLE" }, "permissions"],
        [{ permissions: { allowFsWrite: [`${os.tmpdir()}/*`] } }, "permissions"],
        [{ permissions: { allowFsWrite: [linkTo(os.tmpdir())] } }, "permissions"],
        // Node adds grants up: a flag here would widen the pool's.
        [{ permissions: {}, execArgv: ["--allow-fs-read=*"] }, "execArgv"]
      ]
      for (const [given, option] of cases) {
        const bundle = given.bundle === "BUNDLE" ? given.permissions!.allowFsWrite![0] + "/bundles" : given.bundle
        const options = bundle === undefined ? given : { ...given, bundle }
        const error = yield* refused(options)
        expect(error).toBeInstanceOf(PoolError.InvalidOption)
        expect((error as PoolError.InvalidOption).option).toBe(option)
      }
    }))
})

describe("limits", () => {
  it.live(
    "a task past maxWorkerHeap fails with LimitExceeded, and the next task succeeds",
    () =>
      Effect.gen(function*() {
        const limit = 64 * 2 ** 20
        yield* inPool(
          { maxWorkerHeap: limit },
          Effect.gen(function*() {
            const first = yield* ProcessPool.submit(Pid, undefined)
            expect(yield* ProcessPool.submit(Fill, 4)).toBe(4)
            const error = yield* Effect.flip(ProcessPool.submit(Fill, 512))
            expect(error).toBeInstanceOf(PoolError.LimitExceeded)
            expect(error).toMatchObject({ limit: "maxWorkerHeap", value: limit, pid: first, task: "Fill" })
            expect(yield* ProcessPool.submit(Fill, 4)).toBe(4)
            expect(yield* ProcessPool.submit(Pid, undefined)).not.toBe(first)
          })
        )
      }),
    60_000
  )

  it.live(
    "a task past maxCpuTime fails with LimitExceeded; one that waits as long without the CPU does not",
    () =>
      Effect.gen(function*() {
        yield* inPool(
          { maxCpuTime: "300 millis" },
          Effect.gen(function*() {
            const first = yield* ProcessPool.submit(Pid, undefined)
            expect(yield* ProcessPool.submit(Rest, 900)).toBe(900)
            const started = performance.now()
            const error = yield* Effect.flip(ProcessPool.submit(Spin, 20_000))
            expect(error).toBeInstanceOf(PoolError.LimitExceeded)
            expect(error).toMatchObject({ limit: "maxCpuTime", value: 300, pid: first, task: "Spin" })
            expect(performance.now() - started).toBeLessThan(10_000)
            expect(yield* ProcessPool.submit(Rest, 1)).toBe(1)
            expect(yield* ProcessPool.submit(Pid, undefined)).not.toBe(first)
          })
        )
        // Without the limit, the same task runs to its end.
        expect(yield* inPool({}, ProcessPool.submit(Spin, 600))).toBeGreaterThan(0)
      }),
    60_000
  )

  it.live("in a map, only the items that may have run fail with LimitExceeded; the items after them run", () =>
    inPool(
      { maxCpuTime: "300 millis" },
      Effect.gen(function*() {
        // Items of 2 ms come back one a part (a part holds about half a millisecond of work): so the spinning item
        // is alone in the part that was running when its worker was killed.
        const exits = yield* ProcessPool.mapExits(Spin, [2, 2, 20_000, 2, 2, 2], { chunkSize: 6 })
        expect(exits).toHaveLength(6)
        const failed = exits.flatMap((exit, i) => Exit.isFailure(exit) ? [i] : [])
        expect(failed).toStrictEqual([2])
        for (const i of failed) {
          assert(Exit.isFailure(exits[i]))
          expect(Cause.squash(exits[i].cause)).toMatchObject({ _tag: "LimitExceeded", limit: "maxCpuTime" })
        }
        for (const i of [3, 4, 5]) expect(Exit.isSuccess(exits[i])).toBe(true)
      })
    ), 60_000)

  it.live("a thread past maxWorkerHeap fails with LimitExceeded that names it", () =>
    inPool(
      { isolation: "thread", maxWorkerHeap: 64 * 2 ** 20 },
      Effect.gen(function*() {
        const error = yield* Effect.flip(ProcessPool.submit(Fill, 512))
        expect(error).toMatchObject({ _tag: "LimitExceeded", limit: "maxWorkerHeap" })
        expect(yield* ProcessPool.submit(Fill, 4)).toBe(4)
      })
    ), 60_000)
})
