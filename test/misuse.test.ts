/**
 * What users hit first: misuse, odd values and odd settings, on real processes.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { after } from "../src/internal/clock.ts"
import { privateCacheDir, withoutInspector } from "../src/internal/options.ts"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import { CallerOnly, Env, Nested, Throw, Tick } from "./fixtures/misuse.ts"
import { Sleep, Spin, Square } from "./fixtures/tasks.ts"
import { fixture, isAlive, poolLayer, stats, waitUntil, workerPids } from "./helpers.ts"

const misuse = (options: Partial<ProcessPool.Options> = {}) => poolLayer({ worker: fixture("misuse.ts"), ...options })

/** Runs a script with the pinned Node; resolves with what it printed. Fixtures import src/ by relative paths. */
const run = (args: ReadonlyArray<string>, options: { env?: NodeJS.ProcessEnv; timeout?: number } = {}) =>
  Effect.callback<{ code: number | null; stdout: string; stderr: string; pids: Array<number> }>((resume) => {
    const child = spawn(process.execPath, args, {
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeout ?? 20_000)
    child.on("close", (code) => {
      clearTimeout(timer)
      const pids = [...stderr.matchAll(/worker process (\d+)/gi)].map((m) => Number(m[1]))
      resume(Effect.succeed({ code, stdout, stderr, pids }))
    })
  })

/** Processes whose command line mentions `needle`, other than this one. */
const processesWith = (needle: string): Array<number> =>
  fs.readdirSync("/proc").filter((name) => /^\d+$/.test(name)).map(Number).filter((pid) => {
    if (pid === process.pid) return false
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(needle) && isAlive(pid)
    } catch {
      return false
    }
  })

describe("single-file programs", () => {
  it.live("a module that builds a pool of itself when imported fails at once, naming the guard", () =>
    Effect.gen(function*() {
      const result = yield* run([fixture("unguarded.ts").pathname])
      // It exits by itself with the layer's failure; a cascade of pools is killed by `run` (code null).
      expect(result.code).toBe(1)
      expect(result.stderr).toContain("if (import.meta.main)")
      expect(result.stderr).toContain("builds a pool of itself")
      yield* waitUntil("no process of the module left", () => processesWith("unguarded.ts").length === 0)
    }))

  it.live("a worker may build a pool of another module", () =>
    Effect.gen(function*() {
      expect(yield* ProcessPool.submit(Nested, 12)).toBe(144)
    }).pipe(Effect.provide(misuse({ size: 1 }))))

  it.live("on a Node without import.meta.main, a program that built no pool says why at exit", () =>
    Effect.gen(function*() {
      const entry = new URL("../src/internal/wire/guard.ts", import.meta.url).href
      const script = (version: string) => [
        "--input-type=module",
        "-e",
        `import { explainSilentExit } from ${JSON.stringify(entry)}; explainSilentExit(${JSON.stringify(version)})`
      ]
      const old = yield* run(script("22.12.0"))
      expect(old.code).toBe(0)
      expect(old.stderr).toContain("does not set import.meta.main")
      const current = yield* run(script("24.2.0"))
      expect(current.stderr).toBe("")
    }))
})

describe("durations", () => {
  it.live("an infinite or very long duration means never, not 1 ms", () =>
    Effect.gen(function*() {
      // Node's own timers would fire this after 1 ms.
      let fired = false
      const cancel = after(2 ** 31 + 10, () => (fired = true))
      yield* Effect.sleep(50)
      cancel()
      expect(fired).toBe(false)

      const pids = yield* workerPids
      expect(yield* ProcessPool.submit(Sleep, { ms: 50 }, { timeout: Duration.infinity })).toBeGreaterThan(0)
      expect(yield* ProcessPool.submit(Sleep, { ms: 50 }, { timeout: "30 days" })).toBeGreaterThan(0)
      // A cooperative task interrupted: the grace of 30 days is not cut to 1 ms, so its worker lives on.
      const fiber = yield* Effect.forkChild(ProcessPool.submit(Sleep, { ms: 10_000 }))
      yield* Effect.sleep(200)
      yield* Fiber.interrupt(fiber)
      expect(yield* ProcessPool.submit(Square, 3)).toBe(9)
      expect(yield* workerPids).toEqual(pids)
      expect((yield* stats).crashes).toBe(0)
    }).pipe(Effect.provide(poolLayer({
      size: 1,
      startTimeout: Duration.infinity,
      interruptGrace: "30 days",
      shutdownTimeout: Duration.infinity,
      hangTimeout: Duration.infinity,
      heartbeatInterval: Duration.infinity,
      idleTimeout: Duration.infinity
    }))))

  it.live("an infinite shutdownTimeout lets running tasks finish when the pool closes", () =>
    Effect.gen(function*() {
      const outcome = yield* Effect.scoped(Effect.gen(function*() {
        const pool = yield* ProcessPool.make({
          worker: fixture("worker.ts"),
          size: 1,
          inheritStderr: false,
          shutdownTimeout: Duration.infinity
        })
        const fiber = yield* Effect.forkDetach(pool.submit(Spin, 300))
        yield* Effect.sleep(50)
        return fiber
      }))
      const exit = yield* Fiber.await(outcome)
      assert(Exit.isSuccess(exit))
    }))
})

describe("worker paths", () => {
  it.live("a path with #, ? or % loads that file, relative to the working directory", () =>
    Effect.gen(function*() {
      // Inside the repository, so that the module finds `effect` in node_modules.
      fs.mkdirSync(new URL("./.tmp", import.meta.url), { recursive: true })
      const dir = fs.mkdtempSync(path.join(new URL("./.tmp", import.meta.url).pathname, "app#1?%20-"))
      const lib = new URL("../src/", import.meta.url).href
      const tasks = new URL("./fixtures/tasks.ts", import.meta.url).href
      fs.writeFileSync(
        path.join(dir, "w.ts"),
        `import * as Effect from "effect/Effect"\n` +
          `import * as Worker from ${JSON.stringify(`${lib}Worker.ts`)}\n` +
          `import { Square } from ${JSON.stringify(tasks)}\n` +
          `export default Worker.handlers(Square.handler((n) => Effect.succeed(n + 1000)))\n`
      )
      const absolute = yield* Effect.scoped(
        Effect.flatMap(ProcessPool.make({ worker: path.join(dir, "w.ts"), size: 1 }), (pool) => pool.submit(Square, 1))
      )
      expect(absolute).toBe(1001)
      const cwd = process.cwd()
      process.chdir(dir)
      try {
        const relative = yield* Effect.scoped(
          Effect.flatMap(ProcessPool.make({ worker: "./w.ts", size: 1 }), (pool) => pool.submit(Square, 2))
        )
        expect(relative).toBe(1002)
      } finally {
        process.chdir(cwd)
      }
      fs.rmSync(dir, { recursive: true })
    }))
})

describe("the workers' environment", () => {
  it.live("the compile cache is used only from a private directory", () =>
    Effect.gen(function*() {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "epp-cache-"))
      const fresh = path.join(root, "fresh")
      expect(privateCacheDir(fresh)).toBe(fresh)
      expect(fs.statSync(fresh).mode & 0o777).toBe(0o700)
      const open = path.join(root, "open")
      fs.mkdirSync(open)
      fs.chmodSync(open, 0o777)
      expect(privateCacheDir(open)).toBeUndefined()
      const planted = path.join(root, "planted")
      fs.mkdirSync(planted, { mode: 0o700 })
      const link = path.join(root, "link")
      fs.symlinkSync(planted, link)
      expect(privateCacheDir(link)).toBeUndefined()

      // The default directory is a link someone planted: workers run without the cache.
      const tmp = path.join(root, "tmp")
      fs.mkdirSync(tmp)
      fs.symlinkSync(planted, path.join(tmp, `effect-process-pool-${process.getuid!()}`))
      const saved = { TMPDIR: process.env.TMPDIR, NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE }
      process.env.TMPDIR = tmp
      delete process.env.NODE_COMPILE_CACHE
      try {
        const env = yield* Effect.scoped(
          Effect.flatMap(
            ProcessPool.make({ worker: fixture("misuse.ts"), size: 1, inheritStderr: false }),
            (pool) => pool.submit(Env)
          )
        )
        expect(env.compileCache).toBe(null)
        expect(fs.readdirSync(planted)).toEqual([])
      } finally {
        for (const [key, value] of Object.entries(saved)) {
          if (value === undefined) delete process.env[key]
          else process.env[key] = value
        }
      }
      fs.rmSync(root, { recursive: true })
    }))

  it.live("inspector flags in NODE_OPTIONS do not reach the workers", () =>
    Effect.gen(function*() {
      expect(withoutInspector("--inspect --max-old-space-size=512")).toBe("--max-old-space-size=512")
      expect(withoutInspector("--inspect-port 9230 --inspect-brk=0 --trace-warnings")).toBe("--trace-warnings")
      expect(withoutInspector("--inspect")).toBeUndefined()
      const env = yield* Effect.scoped(
        Effect.flatMap(
          ProcessPool.make({
            worker: fixture("misuse.ts"),
            size: 1,
            inheritStderr: false,
            env: { ...process.env, NODE_OPTIONS: "--inspect-port=0 --max-old-space-size=512" }
          }),
          (pool) => pool.submit(Env)
        )
      )
      expect(env.nodeOptions).toBe("--max-old-space-size=512")
    }))
})

describe("defects that resist encoding", () => {
  it.live("always arrive as an Error with as much of the original as can be read", () =>
    Effect.gen(function*() {
      const defect = (kind: typeof Throw.payloadSchema.Type) =>
        Effect.map(Effect.exit(ProcessPool.submit(Throw, kind)), (exit) => {
          assert(Exit.isFailure(exit))
          assert(Cause.hasDies(exit.cause))
          const error = Cause.squash(exit.cause)
          assert.instanceOf(error, Error)
          return error
        })
      const badMessage = yield* defect("bad-message")
      expect(badMessage.name).toBe("TypeError")
      expect(badMessage.message).toContain("could not be read")
      expect(badMessage.stack).toContain("misuse.ts")
      expect((yield* defect("undefined")).message).toContain("undefined")
      expect((yield* defect("null")).message).toContain("null")
      expect((yield* defect("symbol")).message).toContain("Symbol(odd)")
      expect((yield* defect("string")).message).toBe("plain text")
      const coded = yield* defect("coded")
      expect(coded.name).toBe("RangeError")
      expect(coded.message).toBe("out of range")
      expect((coded as unknown as { code: string }).code).toBe("E_RANGE")
      expect((coded as unknown as { attempt: number }).attempt).toBe(3)
      // The pool goes on.
      expect(yield* ProcessPool.submit(Tick)).toBeGreaterThan(0)
    }).pipe(Effect.provide(misuse({ size: 1 }))))
})

describe("messages", () => {
  it.live("a payload the worker cannot decode says it was sent, and failed in the worker", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ProcessPool.submit(CallerOnly, 5))
      assert.instanceOf(error, PoolError.SerializationError)
      expect(error.side).toBe("worker")
      expect(error.message).toContain("was sent, but the worker could not decode it")
      expect(error.message).not.toContain("so it was not sent")
      expect(error.issue).toContain("only the caller accepts this number")
    }).pipe(Effect.provide(misuse({ size: 1 }))))

  it.live("a payload that does not fit shows the value it got, cut to a readable length", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(ProcessPool.submit(Square, "3" as unknown as number))
      assert.instanceOf(error, PoolError.SerializationError)
      expect(error.message).toContain(`Expected number, got "3"`)
      expect(error.message).toContain("so it was not sent")
      const long = yield* Effect.flip(ProcessPool.submit(Square, "x".repeat(100_000) as unknown as number))
      assert.instanceOf(long, PoolError.SerializationError)
      expect(long.issue.length).toBeLessThan(400)
      expect(long.issue).toContain("more characters")
    }).pipe(Effect.provide(poolLayer({ size: 1 }))))

  it.live("PoolClosed says whether the pool is closing or closed", () =>
    Effect.gen(function*() {
      const pool = yield* Effect.scoped(ProcessPool.make({ worker: fixture("worker.ts"), size: 1 }))
      const error = yield* Effect.flip(pool.submit(Square, 2))
      assert.instanceOf(error, PoolError.PoolClosed)
      expect(error.state).toBe("closed")
      expect(error.message).toContain("is closed")
      expect((yield* pool.stats).state).toBe("closed")
    }))

  it.live("a program whose workers cannot start prints the error once, without the pool's frames", () =>
    Effect.gen(function*() {
      const result = yield* run([fixture("start-fails.ts").pathname, fixture("throws-on-import.ts").pathname])
      expect(result.code).toBe(1)
      const printed = result.stdout + result.stderr
      // Each worker's own line is forwarded; the error that carries the worker's error prints once.
      expect(printed).toContain("about to fail: missing configuration FOO_URL")
      expect(printed.split("FOO_URL is not set").length - 1).toBe(1)
      expect(printed).toContain("WorkerStartError: Error: FOO_URL is not set")
      expect(printed).not.toMatch(/supervisor|workerProcess|worker\/main|internal\/processes|node:internal/)
    }))

  it.live("a program whose worker module does not exist says so in one line", () =>
    Effect.gen(function*() {
      const result = yield* run([fixture("start-fails.ts").pathname, "no/such/worker.ts"])
      expect(result.code).toBe(1)
      const lines = (result.stdout + result.stderr).trim().split("\n")
      expect(lines).toHaveLength(1)
      expect(lines[0]).toContain(
        `InvalidOption: Invalid option worker: got "no/such/worker.ts"; it takes the path or URL of a module that ` +
          `exists: there is no file at ${process.cwd()}/no/such/worker.ts.`
      )
    }))

  it.live("a WorkerStartError puts the worker's own error first", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Layer.build(poolLayer({ worker: fixture("throws-on-import.ts"), size: 1 })))
      assert(Exit.isFailure(exit))
      const error = Cause.squash(exit.cause)
      assert.instanceOf(error, PoolError.WorkerStartError)
      expect(error.message.startsWith("Error: FOO_URL is not set\n")).toBe(true)
      expect(error.message.split("\n")[1]).toContain("throws-on-import.ts:3")
      expect(error.message).not.toContain("worker/main")
      expect(error.message).not.toContain("node:internal")
    }))
})

describe("smaller points", () => {
  it.live("any number of pools share one exit hook", () =>
    Effect.gen(function*() {
      const before = process.listenerCount("exit")
      yield* Effect.scoped(Effect.forEach(
        Array.from({ length: 12 }),
        () => ProcessPool.make({ worker: fixture("worker.ts"), minSize: 0, maxSize: 1 }),
        { discard: true }
      ))
      expect(process.listenerCount("exit") - before).toBeLessThanOrEqual(1)
    }))

  it.live("a task without a payload needs no undefined", () =>
    Effect.gen(function*() {
      const pid = yield* ProcessPool.submit(Tick)
      expect(yield* workerPids).toContain(pid)
      const pool = yield* ProcessPool.ProcessPool
      expect(yield* pool.submit(Tick, undefined, { timeout: "5 seconds" })).toBe(pid)
    }).pipe(Effect.provide(misuse({ size: 1 }))))

  it.live("stats tell running tasks from tasks sent ahead, and show which workers are busy", () =>
    Effect.gen(function*() {
      const idle = yield* stats
      expect(idle.state).toBe("open")
      expect(idle.running).toBe(0)
      expect(idle.workers.every((w) => !w.busy && w.running === 0 && w.prefetched === 0)).toBe(true)
      const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(ProcessPool.submit(Sleep, { ms: 2_000 })))
      yield* waitUntil("tasks sent ahead", Effect.map(stats, (s) => s.inflight === 3))
      const busy = yield* stats
      expect(busy.running).toBe(1)
      expect(busy.workers[0].busy).toBe(true)
      expect(busy.workers[0].running).toBe(1)
      expect(busy.workers[0].prefetched).toBe(2)
      yield* Effect.forEach(fibers, Fiber.interrupt, { discard: true })
    }).pipe(Effect.provide(poolLayer({ size: 1, prefetch: 2 }))))
})
