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
import { fileURLToPath, pathToFileURL } from "node:url"
import { InvalidOption } from "../PoolError.ts"
import type { ClusterOptions, MapOptions, Options, Permissions, RunnerOptions, SubmitOptions } from "../ProcessPool.ts"
import { frameless } from "./frameless.ts"
import type { DispatcherOptions } from "./processes/dispatcher.ts"
import { contains, namesOf } from "./processes/permissions.ts"
import type { SupervisorOptions } from "./processes/supervisor.ts"
import type { SpawnOptions } from "./processes/workerProcess.ts"
import { defaultMaxFrameSize, maxFrameLimit } from "./wire/transport.ts"

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

/** Node's permission flags: those a program's own command line or `NODE_OPTIONS` may carry. */
const permissionFlag = /^--(permission|experimental-permission|allow-[a-z-]+)(=|$)/

/**
 * `args` without Node's permission flags (`--permission`, `--allow-fs-read=…`,
 * `--allow-child-process`, …), and the value of one written apart from it.
 * Workers under `permissions` get only the pool's: Node adds grants up, so a
 * parent's `--allow-fs-read=*` would undo them.
 *
 * @internal
 */
export const withoutPermissionFlags = (args: ReadonlyArray<string>): Array<string> => {
  const kept: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    if (!permissionFlag.test(args[i])) kept.push(args[i])
    else if (/^--allow-fs-(read|write)$/.test(args[i]) && i + 1 < args.length) i++
  }
  return kept
}

/**
 * The default compile-cache directory, `<tmp>/effect-process-pool-<uid>`,
 * if it is safe to use: created with mode 0700, or found as a real
 * directory (not a link) owned by this user that no one else can write.
 * A name in a shared temp dir is predictable, so whoever creates it first
 * could plant cache entries that workers run; when the directory is not
 * ours alone, workers run without the cache.
 *
 * What it holds (Node's compile cache, `bundles`) is checked too: an entry
 * that is a link, or another user's, could hold code someone else put there,
 * so the directory is not used at all. An entry's own mode is not: no one
 * else can reach it through a directory of mode 0700, and Node makes its
 * cache's directories under the umask (group-writable under umask 002).
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
      if (!(entry.isDirectory() || entry.isFile()) || (uid !== undefined && entry.uid !== uid)) return undefined
    }
    return dir
  } catch {
    return undefined
  }
}

/** Where the default cache directory is, `<tmp>/effect-process-pool-<uid>`, whether or not it is safe to use. */
const defaultCachePath = (): string => path.join(os.tmpdir(), `effect-process-pool-${process.getuid?.() ?? "user"}`)

/** `<tmp>/effect-process-pool-<uid>`, when it is safe to use (see `privateCacheDir`). @internal */
export const defaultCacheDir = (): string | undefined => privateCacheDir(defaultCachePath())

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
  compileCache: string | false | undefined,
  confined = false
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
  // Workers under `permissions` use only the compile cache they are given (see `confinedCompileCache`): they may
  // write there, and a cache other workers load code from must not be theirs to write.
  if (confined) {
    if (typeof compileCache === "string") edit().NODE_COMPILE_CACHE = compileCache
    else if (base.NODE_COMPILE_CACHE !== undefined) delete edit().NODE_COMPILE_CACHE
    const words = (result ?? base).NODE_OPTIONS?.split(/\s+/).filter((word) => word.length > 0) ?? []
    if (words.some((word) => permissionFlag.test(word))) {
      const kept = withoutPermissionFlags(words).join(" ")
      if (kept === "") delete edit().NODE_OPTIONS
      else edit().NODE_OPTIONS = kept
    }
    return result
  }
  if (compileCache !== false && base.NODE_COMPILE_CACHE === undefined) {
    const dir = compileCache ?? defaultCacheDir()
    if (dir !== undefined) edit().NODE_COMPILE_CACHE = dir
  }
  return result
}

/**
 * The compile cache of workers under `permissions`: a directory kept for
 * one worker module under one set of permissions, in the default cache or
 * in the `compileCache` directory. Only workers that run the same code with the
 * same rights share it, so what one of them writes there can reach no worker
 * that may do more.
 *
 * @internal
 */
export const confinedCompileCache = (
  url: string,
  permissions: Permissions,
  compileCache: string | false | undefined
): string | false => {
  if (compileCache === false) return false
  // A directory the option names may be shared with workers that may do more: theirs is a directory in it.
  const base = compileCache === undefined ? defaultCacheDir() : privateCacheDir(compileCache)
  if (base === undefined) return false
  const { createHash } = process.getBuiltinModule("node:crypto")
  const key = createHash("sha256").update(JSON.stringify([url, permissions])).digest("hex").slice(0, 16)
  const dir = path.join(base, `confined-${key}`)
  try {
    fs.mkdirSync(dir, { mode: 0o700 })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") return false
  }
  return privateCacheDir(dir) ?? false
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
  readonly isolation: "process" | "thread"
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
  const maxCpuTime = millis(options.maxCpuTime, 0)
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
      // An infinite limit is none: no task start reads /proc for it.
      maxCpuTime: Number.isFinite(maxCpuTime) ? maxCpuTime : 0,
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
    isolation: options.isolation ?? "process",
    spawn: {
      moduleUrl: url,
      // Under `permissions`, the parent's own permission flags do not reach the workers (see `withoutPermissionFlags`).
      execArgv: options.execArgv ??
        (options.permissions === undefined ? defaultExecArgv() : withoutPermissionFlags(defaultExecArgv())),
      env: options.permissions === undefined
        ? workerEnv(options.env, options.compileCache)
        : workerEnv(options.env, confinedCompileCache(url, options.permissions, options.compileCache), true),
      inheritStderr: options.inheritStderr ?? true,
      processGroups: options.processGroups ?? true,
      maxHeap: options.maxWorkerHeap ?? 0,
      permissions: options.permissions,
      // A thread's memory is bounded by its heap limit instead (see workerThread.ts).
      worker: {
        workerConcurrency,
        maxFrameSize,
        maxMemory: options.isolation === "thread" ? 0 : options.maxWorkerMemory ?? 0
      }
    },
    bundleDir: bundleDir(options.bundle)
  }
}

// ---------------------------------------------------------------------------
// Checks: every option is checked when the layer is built or the call made
// ---------------------------------------------------------------------------

/** What an option takes: a test, and the words for it that an `InvalidOption` says. */
interface Check {
  readonly test: (value: unknown) => boolean
  readonly expected: string
}

const whole = (min: number): Check => ({
  test: (value) => Number.isInteger(value) && (value as number) >= min,
  expected: `a whole number of at least ${min}`
})

const wholeOrInfinity = (min: number): Check => ({
  test: (value) => value === Infinity || whole(min).test(value),
  expected: `a whole number of at least ${min}, or Infinity`
})

const positive: Check = {
  test: (value) => typeof value === "number" && value > 0 && !Number.isNaN(value),
  expected: "a number above 0"
}

const durationMillis = (value: unknown): number => {
  if (typeof value === "number" && Number.isNaN(value)) return Number.NaN
  const duration = Duration.fromInput(value as Duration.Input)
  return duration._tag === "Some" ? Duration.toMillis(duration.value) : Number.NaN
}

/** A duration: `atLeastZero` takes 0, else it must be longer. `Infinity` is always taken. */
const duration = (atLeastZero: boolean): Check => ({
  test: (value) => {
    const millis = durationMillis(value)
    return atLeastZero ? millis >= 0 : millis > 0
  },
  expected: `a duration ${atLeastZero ? "of 0 or more" : "above 0"} (milliseconds, "5 seconds", Duration.infinity)`
})

const literals = (...values: ReadonlyArray<string>): Check => ({
  test: (value) => values.includes(value as string),
  expected: values.map((value) => JSON.stringify(value)).join(" or ")
})

const either = (a: Check, b: Check): Check => ({
  test: (value) => a.test(value) || b.test(value),
  expected: `${a.expected}, or ${b.expected}`
})

const ofType = (type: "string" | "boolean" | "object", expected: string): Check => ({
  test: (value) => typeof value === type && value !== null,
  expected
})

const nonEmptyString: Check = {
  test: (value) => typeof value === "string" && value !== "",
  expected: "a non-empty string"
}
const boolean = ofType("boolean", "true or false")
const directoryOrFalse: Check = {
  test: (value) => value === false || nonEmptyString.test(value),
  expected: "a directory, or false"
}

const tasks: Check = {
  test: (value) => Array.isArray(value) && value.every((task) => typeof task?._tag === "string"),
  expected: "an array of tasks made with Task.make"
}

/** Whether this system tells a process's CPU time in `/proc` (see `maxCpuTime`). */
const cpuTimeReadable = (): boolean => process.platform === "linux" && fs.existsSync("/proc/self/stat")

/** The checks of a pool's options: a key missing here is a type error. */
const poolChecks: { readonly [K in keyof Options]-?: Check } = {
  worker: {
    test: (value) => value instanceof URL || (typeof value === "string" && value !== ""),
    expected: "the path or URL of the worker module"
  },
  isolation: literals("process", "thread"),
  size: whole(1),
  minSize: whole(0),
  maxSize: whole(1),
  idleTimeout: duration(true),
  maxWorkerMemory: positive,
  maxWorkerHeap: {
    test: (value) => typeof value === "number" && value >= 2 ** 20 && Number.isFinite(value),
    expected: "a number of bytes of at least 1 MiB (1048576)"
  },
  maxCpuTime: {
    test: (value) => duration(false).test(value) && (cpuTimeReadable() || durationMillis(value) === Infinity),
    expected: "a duration above 0 (the CPU time of a process is read from /proc, which only Linux has)"
  },
  permissions: {
    test: (value) => {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return false
      const paths = (list: unknown) =>
        list === undefined || (Array.isArray(list) && list.every((entry) => typeof entry === "string" && entry !== ""))
      const flag = (flag: unknown) => flag === undefined || typeof flag === "boolean"
      const known = ["allowFsRead", "allowFsWrite", "allowChildProcess", "allowWorker", "allowAddons"]
      const record = value as Record<string, unknown>
      return Object.keys(record).every((key) => known.includes(key)) && paths(record.allowFsRead) &&
        paths(record.allowFsWrite) && flag(record.allowChildProcess) && flag(record.allowWorker) &&
        flag(record.allowAddons)
    },
    expected: "{ allowFsRead?, allowFsWrite?: arrays of paths, allowChildProcess?, allowWorker?, allowAddons?: " +
      "true or false }"
  },
  heartbeatInterval: duration(false),
  hangTimeout: duration(false),
  workerConcurrency: whole(1),
  execArgv: {
    test: (value) => Array.isArray(value) && value.every((arg) => typeof arg === "string"),
    expected: "an array of strings"
  },
  env: ofType("object", "an object of environment variables"),
  compileCache: directoryOrFalse,
  bundle: directoryOrFalse,
  prefetch: either(whole(0), literals("auto")),
  maxQueue: wholeOrInfinity(1),
  queuePolicy: literals("wait", "reject"),
  interruptGrace: duration(true),
  startTimeout: duration(false),
  maxStartFailures: whole(1),
  maxTasksPerWorker: whole(1),
  shutdown: literals("drain", "interrupt"),
  shutdownTimeout: duration(true),
  maxFrameSize: {
    test: (value) => whole(1024).test(value) && (value as number) <= maxFrameLimit,
    expected: `a whole number from 1024 to ${maxFrameLimit}`
  },
  inheritStderr: boolean,
  streamWindow: wholeOrInfinity(1),
  processGroups: boolean,
  name: nonEmptyString,
  metrics: boolean
}

const mapChecks: { readonly [K in keyof MapOptions]-?: Check } = {
  ordered: boolean,
  concurrency: whole(1),
  chunkSize: either(whole(1), literals("auto")),
  bufferSize: whole(0),
  key: nonEmptyString
}

const submitChecks: { readonly [K in keyof SubmitOptions]-?: Check } = {
  timeout: duration(false),
  window: wholeOrInfinity(1),
  key: nonEmptyString
}

const runnerChecks: { readonly [K in keyof RunnerOptions]-?: Check } = {
  ...poolChecks,
  tasks,
  entity: nonEmptyString,
  persisted: boolean,
  maxStall: duration(false)
}

const clusterChecks: { readonly [K in keyof ClusterOptions]-?: Check } = {
  tasks,
  entity: nonEmptyString,
  persisted: boolean,
  spread: whole(1),
  concurrency: whole(1),
  storageTimeout: duration(true),
  name: nonEmptyString,
  metrics: boolean
}

const invalidOption = (props: ConstructorParameters<typeof InvalidOption>[0]) =>
  frameless(() => new InvalidOption(props))

/** A value as an `InvalidOption` quotes it. */
const show = (value: unknown): string => {
  if (typeof value === "string") return JSON.stringify(value)
  if (typeof value === "bigint") return `${value}n`
  if (value instanceof URL) return value.href
  if (typeof value === "object" && value !== null) {
    try {
      return JSON.stringify(value) ?? String(value)
    } catch {
      return String(value)
    }
  }
  return String(value)
}

const checkWith = (checks: Readonly<Record<string, Check>>, options: object | undefined): InvalidOption | undefined => {
  if (options === undefined) return undefined
  for (const option in options) {
    const value = (options as Record<string, unknown>)[option]
    const check = checks[option]
    if (value !== undefined && check !== undefined && !check.test(value)) {
      return invalidOption({ option, value: show(value), expected: check.expected })
    }
  }
  return undefined
}

/**
 * The first option of a pool that makes no sense, as an `InvalidOption`:
 * each alone, then together (`minSize` above `maxSize`), then the worker
 * module, which must exist when it is a file.
 *
 * @internal
 */
export const checkPool = (options: Options | RunnerOptions, checks = poolChecks): InvalidOption | undefined => {
  if (typeof options !== "object" || options === null || options.worker === undefined) {
    return invalidOption({ option: "worker", value: "nothing", expected: poolChecks.worker.expected })
  }
  const alone = checkWith(checks, options)
  if (alone !== undefined) return alone
  const minSize = options.minSize ?? options.size
  const maxSize = options.maxSize ?? options.size
  if (minSize !== undefined && maxSize !== undefined && minSize > maxSize) {
    return invalidOption({
      option: "minSize",
      value: show(minSize),
      expected: `a number no larger than maxSize (${maxSize})`
    })
  }
  const thread = checkThread(options)
  if (thread !== undefined) return thread
  if (options.maxCpuTime !== undefined && (options.workerConcurrency ?? 1) > 1) {
    return invalidOption({
      option: "maxCpuTime",
      value: show(options.maxCpuTime),
      expected: `nothing with workerConcurrency above 1: the CPU time of a worker's tasks cannot be told apart`
    })
  }
  if (options.permissions !== undefined && options.execArgv !== undefined) {
    const flag = options.execArgv.find((arg) => permissionFlag.test(arg))
    if (flag !== undefined) {
      return invalidOption({
        option: "execArgv",
        value: show(options.execArgv),
        expected: `no permission flag (${flag}) beside permissions, which sets the workers' own: Node adds grants ` +
          `up, so one here would widen them`
      })
    }
  }
  const cache = writableCache(options)
  if (cache !== undefined) {
    return invalidOption({
      option: "permissions",
      value: show(options.permissions),
      expected: `write grants that leave out ${cache}, where the pool's workers load code from (a worker that may ` +
        `write there could plant code in every other worker): grant a directory of its own, such as one made ` +
        `with fs.mkdtempSync`
    })
  }
  const url = moduleUrl(options.worker)
  if (url.startsWith("file:")) {
    const file = fileURLToPath(url)
    if (!fs.existsSync(file)) {
      return invalidOption({
        option: "worker",
        value: show(options.worker),
        expected: `the path or URL of a module that exists: there is no file at ${file}`
      })
    }
  }
  return undefined
}

/**
 * A cache that a write grant of `permissions` reaches, if any: the default
 * cache directory (bundles and Node's compile cache, shared by every pool of
 * this user), or the pool's own `bundle` or `compileCache` directory. A grant
 * reaches a cache when either holds the other, by any of their names (links
 * resolved), and a wildcard (`*`) reaches everything.
 */
const writableCache = (options: Options): string | undefined => {
  const writes = (options.permissions?.allowFsWrite ?? []).flatMap(namesOf)
  if (writes.length === 0) return undefined
  const caches = [
    defaultCachePath(),
    typeof options.bundle === "string" ? options.bundle : undefined,
    typeof options.compileCache === "string" ? options.compileCache : undefined
  ].filter((cache): cache is string => cache !== undefined)
  return caches.find((cache) =>
    namesOf(cache).some((name) =>
      writes.some((entry) => entry.includes("*") || contains(entry, name) || contains(name, entry))
    )
  )
}

/**
 * The options that mean nothing for a thread, given with `isolation:
 * "thread"`, and Node flags a thread does not take: Node itself tells, by
 * refusing to start a thread with them.
 */
const checkThread = (options: Options): InvalidOption | undefined => {
  if (options.isolation !== "thread") return undefined
  const refuse = (option: keyof Options, why: string) =>
    invalidOption({
      option,
      value: show(options[option]),
      expected: `nothing with isolation: "thread": ${why}; leave it out, or use isolation: "process"`
    })
  if (options.processGroups !== undefined) {
    return refuse("processGroups", "threads share the pool's process, so there is no process group of their own")
  }
  if (options.permissions !== undefined) {
    return refuse(
      "permissions",
      "a thread has the permissions of the pool's process, which Node sets when the process starts (run the " +
        "program itself with --permission)"
    )
  }
  if (options.maxCpuTime !== undefined) {
    return refuse("maxCpuTime", "the CPU time of one thread of a process cannot be read apart from the others")
  }
  if (options.execArgv === undefined) return undefined
  const { Worker } = process.getBuiltinModule("node:worker_threads")
  try {
    const trial = new Worker("", {
      eval: true,
      execArgv: [...options.execArgv],
      env: workerEnv(options.env, options.compileCache),
      stdout: true,
      stderr: true
    })
    // A preload flag (--import, --require) that fails would otherwise be an uncaught error here.
    trial.on("error", () => {})
    void trial.terminate()
    return undefined
  } catch (error) {
    return invalidOption({
      option: "execArgv",
      value: show(options.execArgv),
      expected: `Node flags a worker thread takes (Node says: ${
        error instanceof Error ? error.message : String(error)
      }); flags for a whole process need isolation: "process"`
    })
  }
}

/** The first option of a runner that makes no sense: see `checkPool`. @internal */
export const checkRunner = (options: RunnerOptions): InvalidOption | undefined => checkPool(options, runnerChecks)

/** The first option of `layerCluster` that makes no sense. @internal */
export const checkCluster = (options: ClusterOptions): InvalidOption | undefined => checkWith(clusterChecks, options)

/** The first option of a `map`, `mapExits` or `stream` call that makes no sense. @internal */
export const checkMap = (options: MapOptions | undefined): InvalidOption | undefined => checkWith(mapChecks, options)

/** The first option of a `submit` call that makes no sense. @internal */
export const checkSubmit = (options: SubmitOptions | undefined): InvalidOption | undefined =>
  checkWith(submitChecks, options)
