import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { privateCacheDir } from "../src/internal/options.ts"
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

/** Runs `effect`, and returns what this process wrote to stderr meanwhile (the workers' stderr, when inherited). */
const capturingStderr = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<readonly [A, string], E> =>
  Effect.suspend(() => {
    const write = process.stderr.write
    let text = ""
    return Effect.acquireUseRelease(
      Effect.sync(() => {
        process.stderr.write = ((chunk: string | Uint8Array) => {
          text += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8")
          return true
        }) as typeof process.stderr.write
      }),
      () => Effect.map(effect, (a) => [a, text] as const),
      () => Effect.sync(() => (process.stderr.write = write))
    )
  })

/** How many workers said they could not load their bundle (see src/internal/worker/boot.ts). */
const bundleFailures = (stderr: string): number => stderr.match(/the bundle of .* failed to load/g)?.length ?? 0

/** One pool on the fixture, with its bundle in `cacheDir`: what its worker saw, and what the workers said. */
const loaded = (cacheDir: string) =>
  capturingStderr(withPool({ bundle: cacheDir, inheritStderr: true }, (pool) => pool.submit(Loaded, undefined)))

/** Code that leaves a mark when it runs, to append to a module. */
const planted = (marker: string): string =>
  `\n;process.getBuiltinModule("node:fs").writeFileSync(${JSON.stringify(marker)}, "ran")\n`

/** Every file under `dir`, with its content. */
const contents = (dir: string): Record<string, string> =>
  Object.fromEntries(
    fs.readdirSync(dir, { recursive: true, encoding: "utf8" }).sort()
      .map((name) => path.join(dir, name))
      .filter((file) => fs.statSync(file).isFile())
      .map((file) => [path.relative(dir, file), fs.readFileSync(file, "utf8")])
  )

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
      // The bundle, which is whole, was not the cause: it is kept.
      expect(fs.readdirSync(cacheDir).filter((name) => name.startsWith("bundle-"))).toHaveLength(1)
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
      const map: Record<string, string> = JSON.parse(fs.readFileSync(path.join(latest, "map.json"), "utf8")).entries
      fs.rmSync(path.join(latest, Object.values(map)[0]!))
      const third = yield* run
      expect(third).toEqual({ ...second, bundled: third.bundled })
      expect(third.plain).toBe(0)
      expect(fs.existsSync(path.join(latest, Object.values(map)[0]!))).toBe(true)

      // A file only the worker module needs goes missing while the pool runs: the replacement of a worker that
      // died fails on it, and the pool goes on, on the plain path. The bundle is set aside.
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
      expect(fs.existsSync(latest)).toBe(false)
      // The next pool builds the bundle again.
      expect((yield* run).plain).toBe(0)

      // A bundle missing a shared chunk is built again too.
      for (const name of fs.readdirSync(latest)) {
        if (name.startsWith("chunk-")) fs.rmSync(path.join(latest, name))
      }
      const fourth = yield* run
      expect(fourth).toEqual({ ...second, bundled: fourth.bundled })
      expect(fourth.plain).toBe(0)

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

  it.live("a bundle that a worker could not load is built again for the next pool", () =>
    Effect.gen(function*() {
      const cacheDir = tempDir()
      const [first] = yield* loaded(cacheDir)
      expect(first.origins.plain).toBe(0)
      // The bundle's file that effect/Effect comes from.
      const file = fileURLToPath(first.resolved)
      const built = fs.readFileSync(file, "utf8")

      // Damaged where it stands, its size kept: the parent's checks pass, the worker fails on it, once, and the
      // pool goes on, on the plain path.
      const fd = fs.openSync(file, "r+")
      fs.writeSync(fd, "@@@", 0)
      fs.closeSync(fd)
      const [damaged, failed] = yield* loaded(cacheDir)
      expect(damaged.origins.bundled).toBe(0)
      expect(damaged.origins.plain).toBeGreaterThan(0)
      expect(bundleFailures(failed)).toBe(1)
      // The next pool builds it again, and its workers load it.
      const [rebuilt, quiet] = yield* loaded(cacheDir)
      expect(rebuilt.origins).toEqual(first.origins)
      expect(rebuilt.resolved).toBe(first.resolved)
      expect(fs.readFileSync(file, "utf8")).toBe(built)
      expect(bundleFailures(quiet)).toBe(0)

      // A syntax error appended: the file's size tells the next pool, which builds it again before any worker starts.
      fs.appendFileSync(file, "\n@@@ a syntax error\n")
      const [appended, none] = yield* loaded(cacheDir)
      expect(appended.origins).toEqual(first.origins)
      expect(fs.readFileSync(file, "utf8")).toBe(built)
      expect(bundleFailures(none)).toBe(0)

      // Code appended once the pool has checked the bundle: the worker that replaces a dead one does not run it, the
      // pool goes on, on the plain path, and the next pool builds the bundle again.
      const marker = path.join(tempDir(), "ran")
      const [replaced, refused] = yield* capturingStderr(withPool(
        { bundle: cacheDir, inheritStderr: true },
        (pool) =>
          Effect.gen(function*() {
            expect((yield* pool.submit(Loaded, undefined)).origins.plain).toBe(0)
            fs.appendFileSync(file, planted(marker))
            const [pid] = (yield* pool.stats).workers.map((w) => w.pid)
            process.kill(pid!, "SIGKILL")
            yield* waitUntil(
              "the worker is gone from the pool",
              Effect.map(pool.stats, (stats) => !isAlive(pid!) && stats.workers.every((w) => w.pid !== pid))
            )
            return yield* pool.submit(Loaded, undefined)
          })
      ))
      expect(replaced.origins.bundled).toBe(0)
      expect(replaced.origins.plain).toBeGreaterThan(0)
      expect(fs.existsSync(marker)).toBe(false)
      expect(bundleFailures(refused)).toBe(1)
      const [last] = yield* loaded(cacheDir)
      expect(last.origins).toEqual(first.origins)
      expect(fs.readFileSync(file, "utf8")).toBe(built)

      fs.rmSync(cacheDir, { recursive: true, force: true })
      fs.rmSync(path.dirname(marker), { recursive: true, force: true })
    }))

  it.live("a cache that others could have written is not run from, and the pool still works", () =>
    Effect.gen(function*() {
      const root = tempDir()
      const cacheDir = path.join(root, "bundles")
      const marker = path.join(root, "ran")
      const [first] = yield* loaded(cacheDir)
      expect(first.origins.plain).toBe(0)
      const file = fileURLToPath(first.resolved)
      const bundleName = path.basename(path.dirname(file))

      // A copy of the cache, with code planted in the file of effect/Effect, in a directory anyone can write.
      const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), "epp-planted-"))
      fs.cpSync(cacheDir, elsewhere, { recursive: true })
      fs.chmodSync(elsewhere, 0o777)
      fs.appendFileSync(path.join(elsewhere, bundleName, path.basename(file)), planted(marker))
      const plantedFiles = contents(elsewhere)

      // `bundles` is a link to it: the cache is not used at all. No worker tries it, and nothing is written there.
      fs.rmSync(cacheDir, { recursive: true })
      fs.symlinkSync(elsewhere, cacheDir)
      const [linked, linkedErr] = yield* loaded(cacheDir)
      expect(fs.existsSync(marker)).toBe(false)
      expect(linked.origins.bundled).toBe(0)
      expect(linked.origins.plain).toBeGreaterThan(0)
      expect(bundleFailures(linkedErr)).toBe(0)
      expect(contents(elsewhere)).toEqual(plantedFiles)

      // In a real `bundles`, the bundle's directory is a link to it: the link is removed, not followed, and the
      // bundle built again in its place.
      fs.unlinkSync(cacheDir)
      expect((yield* loaded(cacheDir))[0].origins.plain).toBe(0)
      fs.rmSync(path.join(cacheDir, bundleName), { recursive: true })
      fs.symlinkSync(path.join(elsewhere, bundleName), path.join(cacheDir, bundleName))
      const [inner, innerErr] = yield* loaded(cacheDir)
      expect(fs.existsSync(marker)).toBe(false)
      expect(inner.origins).toEqual(first.origins)
      expect(inner.resolved).toBe(first.resolved)
      expect(fs.lstatSync(path.join(cacheDir, bundleName)).isDirectory()).toBe(true)
      expect(bundleFailures(innerErr)).toBe(0)
      expect(contents(elsewhere)).toEqual(plantedFiles)

      // `bundles` itself can be written by others, and code was planted in it: the cache is not used at all.
      fs.appendFileSync(file, planted(marker))
      const plantedHere = fs.readFileSync(file, "utf8")
      fs.chmodSync(cacheDir, 0o777)
      const [open, openErr] = yield* loaded(cacheDir)
      expect(fs.existsSync(marker)).toBe(false)
      expect(open.origins.bundled).toBe(0)
      expect(open.origins.plain).toBeGreaterThan(0)
      expect(bundleFailures(openErr)).toBe(0)
      expect(fs.readFileSync(file, "utf8")).toBe(plantedHere)

      fs.rmSync(root, { recursive: true, force: true })
      fs.rmSync(elsewhere, { recursive: true, force: true })
    }))

  it("the default cache directory is not used when anything in it is a link, or others can write the directory", () => {
    const dir = tempDir()
    const bundles = path.join(dir, "bundles")
    fs.mkdirSync(bundles, { mode: 0o700 })
    expect(privateCacheDir(dir)).toBe(dir)
    const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), "epp-planted-"))
    fs.rmdirSync(bundles)
    fs.symlinkSync(elsewhere, bundles)
    expect(privateCacheDir(dir)).toBeUndefined()
    fs.unlinkSync(bundles)
    // What Node makes in it under umask 002 is group-writable: no one else can reach it through the 0700 directory.
    fs.mkdirSync(bundles)
    fs.chmodSync(bundles, 0o775)
    expect(privateCacheDir(dir)).toBe(dir)
    fs.chmodSync(dir, 0o777)
    expect(privateCacheDir(dir)).toBeUndefined()
    fs.rmSync(dir, { recursive: true, force: true })
    fs.rmSync(elsewhere, { recursive: true, force: true })
  })
})
