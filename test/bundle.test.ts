import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import * as PoolError from "../src/PoolError.ts"
import * as ProcessPool from "../src/ProcessPool.ts"
import * as Task from "../src/Task.ts"
import { Loaded } from "./fixtures/bundled.ts"
import { Answer } from "./fixtures/tasks.ts"
import { fixture, isAlive, waitUntil } from "./helpers.ts"

/** Workers that record every module they load (load-hooks.ts). */
const recording = ["--import", fixture("load-hooks.ts").href]

const withPool = <A, E>(
  options: Partial<ProcessPool.Options>,
  use: (pool: ProcessPool.ProcessPool["Service"]) => Effect.Effect<A, E>
) =>
  Effect.scoped(
    Effect.gen(function*() {
      const pool = yield* ProcessPool.make({
        worker: fixture("bundled.ts"),
        size: 1,
        inheritStderr: false,
        ...options,
        execArgv: [...process.execArgv, ...recording, ...(options.execArgv ?? [])]
      })
      return yield* use(pool)
    })
  )

/** The command lines of this process's children. */
const childCommands = (): Array<string> =>
  fs.readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").trim().split(" ")
    .filter((pid) => pid !== "")
    .map((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ")
      } catch {
        return ""
      }
    })

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), "epp-bundle-"))

describe("bundle", () => {
  it.live("workers load effect from the bundle, and the worker module keeps its meaning", () =>
    Effect.gen(function*() {
      const cacheDir = tempDir()
      const bundled = yield* withPool({ bundle: cacheDir }, (pool) =>
        Effect.tap(pool.submit(Loaded, undefined), () =>
          // esbuild's service process ends once the bundle is built: only the workers are left.
          Effect.sync(() => expect(childCommands().filter((command) => command.includes("esbuild"))).toEqual([]))))
      const plain = yield* withPool({ bundle: false }, (pool) => pool.submit(Loaded, undefined))
      // One copy of effect: nothing of the installed package is loaded file by file.
      expect(bundled.origins.plain).toBe(0)
      expect(bundled.origins.bundled).toBeGreaterThan(0)
      expect(bundled.resolved.startsWith(pathToFileURL(cacheDir).href)).toBe(true)
      expect(plain.origins.bundled).toBe(0)
      expect(plain.origins.plain).toBeGreaterThan(0)
      // import.meta and relative reads mean what they say either way.
      expect(bundled.url).toBe(fixture("bundled.ts").href)
      expect(bundled.main).toBe(plain.main)
      expect(bundled.firstLine).toBe("/**")
      expect(plain.firstLine).toBe("/**")
      fs.rmSync(cacheDir, { recursive: true, force: true })
    }))

  it.live("a cache directory that cannot be written leaves workers on the plain path", () =>
    Effect.gen(function*() {
      const result = yield* withPool({ bundle: "/dev/null/cache" }, (pool) => pool.submit(Loaded, undefined))
      expect(result.origins.bundled).toBe(0)
      expect(result.origins.plain).toBeGreaterThan(0)
    }))

  it.live("a module that itself exits with the bundle's failure code fails the start, once on each path", () =>
    Effect.gen(function*() {
      const cacheDir = tempDir()
      const exit = yield* Effect.exit(
        withPool({ worker: fixture("exits-74.ts"), bundle: cacheDir, maxStartFailures: 1 }, () => Effect.void)
      )
      expect(Exit.isFailure(exit)).toBe(true)
      const error = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      expect(error).toBeInstanceOf(PoolError.WorkerStartError)
      expect((error as PoolError.WorkerStartError).message).toContain("exited with code 74")
      fs.rmSync(cacheDir, { recursive: true, force: true })
    }))

  it.live("a module that cannot be bundled runs on the plain path", () =>
    Effect.gen(function*() {
      const cacheDir = tempDir()
      const result = yield* withPool(
        { worker: fixture("virtual.ts"), bundle: cacheDir },
        (pool) => pool.submit(Answer, undefined)
      )
      expect(result.answer).toBe(42)
      expect(result.bundled).toBe(0)
      expect(result.plain).toBeGreaterThan(0)
      fs.rmSync(cacheDir, { recursive: true, force: true })
    }))

  it.live("a changed module is scanned again, and a damaged bundle is rebuilt or bypassed", () =>
    Effect.gen(function*() {
      const cacheDir = tempDir()
      // Inside the repository, where `effect` resolves.
      fs.mkdirSync("node_modules/.cache", { recursive: true })
      const moduleDir = fs.mkdtempSync(path.resolve("node_modules/.cache/bundle-test-"))
      // JavaScript: Node strips no types under node_modules.
      const worker = path.join(moduleDir, "worker.mjs")
      const Version = Task.make("Version", {
        payload: Schema.Void,
        success: Schema.Struct({ value: Schema.String, plain: Schema.Number, bundled: Schema.Number })
      })
      // Relative, as people write them (esbuild follows no file: URLs).
      const src = (name: string) => path.relative(moduleDir, path.resolve(name))
      const write = (imports: string, value: string) =>
        fs.writeFileSync(
          worker,
          `import * as Effect from "effect/Effect"\nimport * as Schema from "effect/Schema"\n${imports}\n` +
            `import * as Task from "${src("src/Task.ts")}"\nimport * as Worker from "${src("src/Worker.ts")}"\n` +
            `import { origins } from "${src("test/fixtures/bundled.ts")}"\n` +
            `const Version = Task.make("Version", { payload: Schema.Void, success: Schema.Struct({ ` +
            `value: Schema.String, plain: Schema.Number, bundled: Schema.Number }) })\n` +
            `export default Worker.handlers(Version.handler(() => Effect.sync(() => ` +
            `({ value: ${value}, ...origins() }))))\n`
        )
      const run = withPool(
        { worker: pathToFileURL(worker), bundle: cacheDir },
        (pool) => pool.submit(Version, undefined)
      )
      const bundles = () => fs.readdirSync(cacheDir).filter((name) => name.startsWith("bundle-"))

      write("", `"v1"`)
      const first = yield* run
      expect(first).toEqual({ value: "v1", plain: 0, bundled: first.bundled })
      expect(bundles()).toHaveLength(1)

      // A bundle in use is marked as used, once a day at most.
      const [old] = bundles()
      const longAgo = new Date(Date.now() - 40 * 24 * 60 * 60 * 1000)
      fs.utimesSync(path.join(cacheDir, old!), longAgo, longAgo)
      expect((yield* run).value).toBe("v1")
      expect(Date.now() - fs.statSync(path.join(cacheDir, old!)).mtimeMs).toBeLessThan(60_000)

      // A new import of effect: the scan is stale, and the new bundle holds Duration.
      const kept = path.join(cacheDir, "kept")
      fs.writeFileSync(kept, "")
      // Entries unused for 30 days go when a new bundle is written; newer ones stay.
      fs.utimesSync(path.join(cacheDir, old!), longAgo, longAgo)
      write(`import * as Duration from "effect/Duration"`, `String(Duration.toMillis(Duration.seconds(2)))`)
      const second = yield* run
      expect(second.value).toBe("2000")
      expect(second.plain).toBe(0)
      expect(bundles()).toHaveLength(1)
      expect(bundles()[0]).not.toBe(old)
      expect(fs.existsSync(kept)).toBe(true)

      const [current] = bundles()

      // A bundle missing an entry file is built again.
      const latest = path.join(cacheDir, current!)
      const map: Record<string, string> = JSON.parse(fs.readFileSync(path.join(latest, "map.json"), "utf8"))
      fs.rmSync(path.join(latest, Object.values(map)[0]!))
      const third = yield* run
      expect(third).toEqual({ ...second, bundled: third.bundled })
      expect(third.plain).toBe(0)
      expect(fs.existsSync(path.join(latest, Object.values(map)[0]!))).toBe(true)

      // A file only the worker module needs goes missing while the pool runs: the replacement of a worker that
      // died fails on it, and the pool goes on, on the plain path.
      const afterLoss = yield* withPool(
        { worker: pathToFileURL(worker), bundle: cacheDir },
        (pool) =>
          Effect.gen(function*() {
            expect((yield* pool.submit(Version, undefined)).plain).toBe(0)
            const duration = Object.entries(map).find(([url]) => url.endsWith("/Duration.js"))!
            fs.rmSync(path.join(latest, duration[1]))
            const [pid] = (yield* pool.stats).workers.map((w) => w.pid)
            process.kill(pid!, "SIGKILL")
            // Gone from the pool, not only from the system: the next task goes to its replacement.
            yield* waitUntil(
              "the worker is gone from the pool",
              Effect.map(pool.stats, (stats) => !isAlive(pid!) && stats.workers.every((w) => w.pid !== pid))
            )
            return yield* pool.submit(Version, undefined)
          })
      )
      expect(afterLoss.value).toBe("2000")
      expect(afterLoss.plain).toBeGreaterThan(0)
      // The next pool finds the entry missing and builds the bundle again.
      expect((yield* run).plain).toBe(0)

      // A bundle missing a shared chunk fails to load in the worker: the pool goes on, on the plain path.
      for (const name of fs.readdirSync(latest)) {
        if (name.startsWith("chunk-")) fs.rmSync(path.join(latest, name))
      }
      const fourth = yield* run
      expect(fourth.value).toBe("2000")
      expect(fourth.bundled).toBe(0)
      expect(fourth.plain).toBeGreaterThan(0)

      // Another install of effect (its package.json rewritten): a new bundle, scanned again.
      const manifest = path.resolve("node_modules/effect/package.json")
      const { atime, mtime } = fs.statSync(manifest)
      const reinstalled = yield* Effect.ensuring(
        Effect.sync(() => fs.utimesSync(manifest, atime, new Date(mtime.getTime() + 1000))).pipe(
          Effect.andThen(run)
        ),
        Effect.sync(() => fs.utimesSync(manifest, atime, mtime))
      )
      expect(reinstalled).toEqual({ ...second, bundled: reinstalled.bundled })
      expect(bundles()).toHaveLength(2)
      // Last: its mtime is put back to the millisecond only, which is another install again for what follows.

      fs.rmSync(cacheDir, { recursive: true, force: true })
      fs.rmSync(moduleDir, { recursive: true, force: true })
    }))
})
