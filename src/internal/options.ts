/**
 * What the pool's options mean: defaults, durations, the worker module's URL,
 * and the workers' command line and environment, in one place.
 *
 * @internal
 */
import * as Duration from "effect/Duration"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import type { Options } from "../ProcessPool.ts"
import type { DispatcherOptions } from "./dispatcher.ts"
import type { SupervisorOptions } from "./supervisor.ts"
import { defaultMaxFrameSize, maxFrameLimit } from "./transport.ts"
import type { SpawnOptions } from "./workerProcess.ts"

/**
 * A duration option in milliseconds: `fallback` when absent, `Infinity` for
 * `Duration.infinity`. Timers take any length (see clock.ts): a duration
 * past Node's timer limit is never cut to 1 ms.
 *
 * @internal
 */
export const millis = (input: Duration.Input | undefined, fallback: number): number =>
  input === undefined ? fallback : Math.max(0, Duration.toMillis(input))

/**
 * The worker module as a URL. A `URL`, or a string with a scheme
 * (`file:`, `data:`), is taken as it is; any other string is a file path,
 * relative to the current working directory, made into a `file:` URL so that
 * `#`, `?` and `%` in its name stay part of the name.
 *
 * @internal
 */
export const moduleUrl = (worker: string | URL): string =>
  worker instanceof URL
    ? worker.href
    : /^[a-z][a-z0-9+.-]+:/i.test(worker) && !/^[a-z]:[\\/]/i.test(worker)
    ? worker
    : pathToFileURL(path.resolve(worker)).href

const inspectorFlag = /^--(inspect|debug)/

/** The parent's Node flags, without inspector flags: workers must not try to open the parent's inspector port. */
export const defaultExecArgv = (): Array<string> => process.execArgv.filter((arg) => !inspectorFlag.test(arg))

/**
 * `NODE_OPTIONS` without inspector flags (`--inspect`, `--inspect-brk=…`,
 * `--inspect-port 9230`, `--debug…`), or `undefined` when nothing is left.
 *
 * @internal
 */
export const withoutInspector = (nodeOptions: string): string | undefined => {
  const kept: Array<string> = []
  const words = nodeOptions.split(/\s+/).filter((word) => word.length > 0)
  for (let i = 0; i < words.length; i++) {
    const word = words[i]
    if (!inspectorFlag.test(word)) {
      kept.push(word)
      continue
    }
    // A flag written apart from its value, such as `--inspect-port 9230`, takes the value with it.
    if (!word.includes("=") && /^--(inspect|debug)-port$/.test(word) && i + 1 < words.length) i++
  }
  return kept.length === 0 ? undefined : kept.join(" ")
}

/**
 * The default compile-cache directory, `<tmp>/effect-process-pool-<uid>`,
 * if it is safe to use: created with mode 0700, or found as a real
 * directory (not a link) owned by this user that no one else can write.
 * A name in a shared temp dir is predictable, so whoever creates it first
 * could plant cache entries that workers run; when the directory is not
 * ours alone, workers run without the cache.
 *
 * What it holds (Node's compile cache, `bundles`) is checked alike: an entry
 * that is a link, or another user's, or that others can write, could hold
 * code someone else put there, so the directory is not used at all.
 *
 * @internal
 */
export const privateCacheDir = (dir: string): string | undefined => {
  try {
    fs.mkdirSync(dir, { mode: 0o700 })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") return undefined
  }
  try {
    const stat = fs.lstatSync(dir)
    const uid = process.getuid?.()
    if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o077) !== 0) return undefined
    for (const name of fs.readdirSync(dir)) {
      const entry = fs.lstatSync(path.join(dir, name), { throwIfNoEntry: false })
      // Gone since it was listed.
      if (entry === undefined) continue
      if (
        !(entry.isDirectory() || entry.isFile()) || (uid !== undefined && entry.uid !== uid) ||
        (entry.mode & 0o022) !== 0
      ) return undefined
    }
    return dir
  } catch {
    return undefined
  }
}

/** `<tmp>/effect-process-pool-<uid>`, when it is safe to use (see `privateCacheDir`). @internal */
export const defaultCacheDir = (): string | undefined =>
  privateCacheDir(path.join(os.tmpdir(), `effect-process-pool-${process.getuid?.() ?? "user"}`))

/**
 * Where workers' bundles are cached: the `bundle` option, or `bundles` under
 * the default cache directory; undefined for none.
 *
 * @internal
 */
export const bundleDir = (bundle: string | false | undefined): string | undefined => {
  if (bundle !== undefined) return bundle === false ? undefined : bundle
  const base = defaultCacheDir()
  return base === undefined ? undefined : path.join(base, "bundles")
}

/**
 * The workers' environment: the given one or the parent's, with Node's
 * compile cache turned on, and without inspector flags in `NODE_OPTIONS`.
 *
 * @internal
 */
export const workerEnv = (
  env: NodeJS.ProcessEnv | undefined,
  compileCache: string | false | undefined
): NodeJS.ProcessEnv | undefined => {
  const base = env ?? process.env
  let result: NodeJS.ProcessEnv | undefined = env
  const edit = (): NodeJS.ProcessEnv => (result = result === env || result === undefined ? { ...base } : result)
  if (base.NODE_OPTIONS !== undefined && /--(inspect|debug)/.test(base.NODE_OPTIONS)) {
    const kept = withoutInspector(base.NODE_OPTIONS)
    const copy = edit()
    if (kept === undefined) delete copy.NODE_OPTIONS
    else copy.NODE_OPTIONS = kept
  }
  if (compileCache !== false && base.NODE_COMPILE_CACHE === undefined) {
    const dir = compileCache ?? defaultCacheDir()
    if (dir !== undefined) edit().NODE_COMPILE_CACHE = dir
  }
  return result
}

/** Every option of a pool, resolved: defaults filled in, durations in milliseconds. @internal */
export interface Resolved {
  readonly maxSize: number
  readonly maxFrameSize: number
  readonly streamWindow: number
  readonly shutdown: "drain" | "interrupt"
  readonly shutdownTimeout: number
  readonly dispatcher: DispatcherOptions
  readonly supervisor: SupervisorOptions
  readonly spawn: SpawnOptions
  /** Where workers' bundles are cached; undefined for the plain path. */
  readonly bundleDir: string | undefined
}

/**
 * Resolves a pool's options. `size` defaults to the available parallelism and
 * sets both `minSize` and `maxSize`.
 *
 * @internal
 */
export const resolve = (options: Options): Resolved => {
  const cpus = os.availableParallelism()
  const minSize = Math.max(0, options.minSize ?? options.size ?? (options.maxSize === undefined ? cpus : 1))
  const maxSize = Math.max(1, minSize, options.maxSize ?? options.size ?? Math.max(minSize, cpus))
  const workerConcurrency = Math.max(1, options.workerConcurrency ?? 1)
  const maxFrameSize = Math.min(options.maxFrameSize ?? defaultMaxFrameSize, maxFrameLimit)
  const url = moduleUrl(options.worker)
  const maxTasksPerWorker = options.maxTasksPerWorker ?? 0
  return {
    maxSize,
    maxFrameSize,
    streamWindow: options.streamWindow ?? 128,
    shutdown: options.shutdown ?? "drain",
    shutdownTimeout: millis(options.shutdownTimeout, 5_000),
    dispatcher: {
      workerConcurrency,
      prefetch: options.prefetch ?? "auto",
      maxQueue: options.maxQueue ?? 65_536,
      queuePolicy: options.queuePolicy ?? "wait",
      interruptGrace: millis(options.interruptGrace, 1_000),
      maxTasksPerWorker
    },
    supervisor: {
      minSize,
      maxSize,
      idleTimeout: millis(options.idleTimeout, 30_000),
      heartbeatInterval: millis(options.heartbeatInterval, 1_000),
      hangTimeout: millis(options.hangTimeout, 10_000),
      startTimeout: millis(options.startTimeout, 30_000),
      maxStartFailures: options.maxStartFailures ?? 5,
      maxTasksPerWorker,
      moduleUrl: url
    },
    spawn: {
      moduleUrl: url,
      execArgv: options.execArgv ?? defaultExecArgv(),
      env: workerEnv(options.env, options.compileCache),
      inheritStderr: options.inheritStderr ?? true,
      processGroups: options.processGroups ?? true,
      worker: { workerConcurrency, maxFrameSize, maxMemory: options.maxWorkerMemory ?? 0 }
    },
    bundleDir: bundleDir(options.bundle)
  }
}
