/**
 * Workers load `effect` from a bundle: one small graph of files built once by
 * esbuild, cached on disk, instead of the hundreds of modules Node's loader
 * resolves, reads and links one by one. Start-up and memory per worker are
 * mostly that loading.
 *
 * Only `effect` is bundled. The worker module and everything else it imports
 * load as they are, so `import.meta`, relative file reads and native addons
 * keep their meaning. A resolve hook in the worker (worker/boot.ts) sends each
 * import that Node resolves to a module of `effect` to that module's entry in
 * the bundle: every import of `effect` in the worker, the user's, a
 * library's and the pool's own, shares one copy.
 *
 * Three records live in the cache directory:
 * - `scan-<key>.json`, per worker module: the `effect` modules its graph
 *   imports, found by an esbuild scan, and every file of that graph with its
 *   size and mtime. Any change to one of those files makes it stale.
 * - `bundle-<key>/`, per set of `effect` modules and their package's version:
 *   the bundle, and `map.json`, which lists its entries and the size and
 *   SHA-256 of each of its files as they were written.
 * - `plan-<key>.json`, which the worker's hook reads (see `Plan`).
 * Each is written to a temporary name and renamed, so a reader never sees
 * half of one, and pools that start together may build the same one.
 *
 * Workers run what the cache holds, so it is used only where no one else can
 * have written it: the cache directory and each bundle's directory must be
 * real directories (not links), owned by this user and writable by no one
 * else, and each file of a bundle must be a file of this user's with the size
 * it was written with. A bundle that fails these checks is set aside and built
 * again; a cache directory that fails them is not used at all.
 *
 * A bundle that a worker could not load is checked against its SHA-256s
 * (see `discard`) and, when it is not whole, set aside: the next pool builds
 * it again.
 *
 * Whatever goes wrong (no esbuild, a module esbuild cannot follow, a
 * directory that cannot be written or is not safe to use) leaves the workers
 * on the plain path.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

/** The path of a worker's `Plan`, which its hooks read; see worker/boot.ts. @internal */
export type PlanFile = string

/** A file as [path, size, mtime]: a change to either makes what was made of it stale. */
type Stamp = readonly [string, number, number]

interface Scan {
  /** Every file of the worker's graph other than `effect`'s. */
  readonly inputs: ReadonlyArray<Stamp>
  /** The files of `effect` the graph imports. */
  readonly entries: ReadonlyArray<string>
}

/** What the worker's hook reads (worker/boot.ts). @internal */
export interface Plan {
  /** The bundle's directory. */
  readonly dir: string
  /** URLs of `effect`'s modules, to the name of their entry in the bundle. */
  readonly entries: Record<string, string>
  /** The size of each file of the bundle, by name: the hook loads no other file from `dir`, and none of another size. */
  readonly sizes: Record<string, number>
}

/** What `map.json` holds: the bundle's entries, and each of its files as it was written. */
interface BundleMap {
  /** URLs of `effect`'s modules, to the name of their entry in the bundle. */
  readonly entries: Record<string, string>
  /** Each file of the bundle by name, as [size, SHA-256 in hex]. */
  readonly files: Record<string, readonly [number, string]>
}

/** The layout of `map.json` and `Plan`: part of the bundle's key, so that other versions of this library keep theirs. */
const layout = 2

/** The subset of esbuild's API used here. */
interface Esbuild {
  /** Ends esbuild's service process, which otherwise lives as long as this one. */
  readonly stop: () => void
  readonly build: (options: Record<string, unknown>) => Promise<{
    readonly metafile?: {
      readonly inputs: Record<string, unknown>
      readonly outputs: Record<string, { readonly entryPoint?: string }>
    }
  }>
}

interface PluginBuild {
  readonly onResolve: (
    options: { readonly filter: RegExp },
    callback: (args: ResolveArgs) => Promise<{ readonly path: string; readonly external: boolean } | undefined>
  ) => void
  readonly resolve: (
    path: string,
    options: { kind: string; resolveDir: string; importer: string; pluginData: unknown }
  ) => Promise<{ readonly path: string; readonly errors: ReadonlyArray<unknown> }>
}

interface ResolveArgs {
  readonly path: string
  readonly kind: string
  readonly importer: string
  readonly resolveDir: string
  readonly pluginData: unknown
}

const effectSpecifier = /^effect(\/|$)/
const inner = Symbol("bundle.inner")

/** The conditions given to Node in `execArgv`, which the scan must resolve with too. */
export const conditionsOf = (execArgv: ReadonlyArray<string>): Array<string> => {
  const conditions: Array<string> = []
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!
    const joined = /^(?:--conditions|-C)=(.+)$/.exec(arg)
    if (joined !== null) conditions.push(joined[1]!)
    else if ((arg === "--conditions" || arg === "-C") && i + 1 < execArgv.length) conditions.push(execArgv[++i]!)
  }
  return conditions
}

/**
 * A name for a cache entry: two 32-bit FNV-1a hashes of the value's JSON.
 * Not `node:crypto`, which alone adds about 4 MB and 5 ms to the parent's
 * start; the cache is private to its user, so names need no secrecy.
 */
const hash = (value: unknown): string => {
  const text = JSON.stringify(value)
  let a = 0x811c9dc5
  let b = 0x01000193 ^ text.length
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    a = Math.imul(a ^ c, 0x01000193)
    b = Math.imul(b ^ c, 0x01000193) ^ (a >>> 15)
  }
  return (a >>> 0).toString(16).padStart(8, "0") + (b >>> 0).toString(16).padStart(8, "0")
}

const readJson = <A>(file: string): A | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as A
  } catch {
    return undefined
  }
}

/**
 * The status of `file` when no one but this user can have written what it
 * holds: a directory or a regular file as asked (not a link, which could
 * lead anywhere), owned by this user, writable by no one else. Where there
 * are no POSIX owners (Windows), the mode says nothing of who can write, and
 * only links are refused.
 */
const ours = (file: string, kind: "directory" | "file"): fs.Stats | undefined => {
  try {
    const stat = fs.lstatSync(file)
    const uid = process.getuid?.()
    const right = kind === "directory" ? stat.isDirectory() : stat.isFile()
    return right && (uid === undefined || (stat.uid === uid && (stat.mode & 0o022) === 0)) ? stat : undefined
  } catch {
    return undefined
  }
}

/** Reads a record of the cache, when it is this user's alone (see `ours`). */
const readOwn = <A>(file: string): A | undefined => ours(file, "file") === undefined ? undefined : readJson<A>(file)

/** Whether no file of the scanned graph has changed; a damaged record is stale too. */
const fresh = (scan: Scan): boolean => {
  try {
    return Array.isArray(scan.entries) && scan.inputs.every(([file, size, mtime]) => {
      const stat = fs.statSync(file)
      return stat.size === size && stat.mtimeMs === mtime
    })
  } catch {
    return false
  }
}

const tmpName = (target: string): string => `${target}.${process.pid}.${Math.random().toString(16).slice(2, 10)}.tmp`

/** Renames `tmp` to `target`; when another pool that started at the same time got there first, keeps theirs. */
const publish = (tmp: string, target: string): void => {
  try {
    fs.renameSync(tmp, target)
  } catch (error) {
    fs.rmSync(tmp, { recursive: true, force: true })
    if (!fs.existsSync(target)) throw error
  }
}

/** Writes `text` to `file` unless it holds it already, for this user alone. */
const record = (file: string, text: string): void => {
  if (ours(file, "file") !== undefined) {
    try {
      if (fs.readFileSync(file, "utf8") === text) return
    } catch {
      // Rewritten below.
    }
  }
  const tmp = tmpName(file)
  fs.writeFileSync(tmp, text, { mode: 0o600 })
  publish(tmp, file)
}

/**
 * Moves `entry` out of the way, then removes it. The rename is atomic and
 * follows no link: a pool that looks for the entry next finds it gone, and
 * a link is removed, not what it leads to.
 */
const setAside = (entry: string): void => {
  const tmp = tmpName(entry)
  try {
    fs.renameSync(entry, tmp)
  } catch {
    // Gone already.
    return
  }
  try {
    fs.rmSync(tmp, { recursive: true, force: true })
  } catch {
    // What cannot be removed now is pruned later.
  }
}

const isRecord = (value: unknown): value is object => typeof value === "object" && value !== null

/**
 * The map of the bundle in `dir` when it can be used: the directory and each
 * of its files are this user's alone (see `ours`), every file is there with
 * the size it was written with, and every entry is one of them. Its content
 * is checked by `discard`, once a worker could not load it.
 */
const intact = (dir: string): BundleMap | undefined => {
  if (ours(dir, "directory") === undefined) return undefined
  const map = readOwn<BundleMap>(path.join(dir, "map.json"))
  if (!isRecord(map) || !isRecord(map.entries) || !isRecord(map.files)) return undefined
  try {
    for (const name in map.files) {
      if (ours(path.join(dir, name), "file")?.size !== map.files[name]![0]) return undefined
    }
    return Object.values(map.entries).every((name) => Object.hasOwn(map.files, name)) ? map : undefined
  } catch {
    // A damaged map.
    return undefined
  }
}

/** Whether each file of the bundle in `dir` still has the SHA-256 it was written with. */
const whole = (dir: string): boolean => {
  const map = intact(dir)
  if (map === undefined) return false
  // Loaded here only: the parent needs it for nothing else (see `hash`).
  const crypto = process.getBuiltinModule("node:crypto")
  try {
    return Object.entries(map.files).every(([name, [, sha256]]) =>
      crypto.hash("sha256", fs.readFileSync(path.join(dir, name))) === sha256
    )
  } catch {
    return false
  }
}

/**
 * Sets aside the bundle of `planFile`, which a worker could not load, unless
 * it is whole: the next pool to start on it builds it again. A bundle found
 * whole was not the cause (a worker module that itself exits with the
 * bundle's failure code), or was built again meanwhile by another pool
 * sharing the cache, and is kept.
 *
 * Another pool may rebuild the bundle between the check and the move: it is
 * then set aside once more, and that pool's next worker takes the plain path
 * until a pool builds it again. Nothing is lost but the build.
 *
 * @internal
 */
export const discard = (planFile: PlanFile): void => {
  try {
    const plan = readOwn<Plan>(planFile)
    // A damaged plan is written again by the next pool (see `record`).
    if (typeof plan?.dir === "string" && !whole(plan.dir)) setAside(plan.dir)
  } catch {
    // Nothing to set aside.
  }
}

/** The nearest directory at or above `file`'s that holds a `package.json`: its package's root, if any. @internal */
export const packageRoot = (file: string): string | undefined => {
  for (let dir = path.dirname(file);; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir
    if (path.dirname(dir) === dir) return undefined
  }
}

/** The package.json of the package `file` belongs to: its version and mtime key the bundle. */
const packageOf = (file: string): Stamp | undefined => {
  const root = packageRoot(file)
  if (root === undefined) return undefined
  const manifest = path.join(root, "package.json")
  try {
    const stat = fs.statSync(manifest)
    return [manifest, stat.size, stat.mtimeMs] as const
  } catch {
    // Gone since it was found.
    return undefined
  }
}

const loadEsbuild = async (): Promise<Esbuild | undefined> => {
  try {
    return (await import("esbuild" as string)) as Esbuild
  } catch {
    return undefined
  }
}

/** Finds the `effect` modules the worker's graph imports, with esbuild; `effect` itself is not read. */
const scan = async (esbuild: Esbuild, entryPoints: Array<string>, conditions: Array<string>): Promise<Scan> => {
  const entries = new Set<string>()
  const result = await esbuild.build({
    entryPoints,
    bundle: true,
    write: false,
    // Never written; esbuild needs a directory to name the outputs of several entries.
    outdir: "scan",
    metafile: true,
    platform: "node",
    format: "esm",
    conditions,
    logLevel: "silent",
    // Only resolution and parsing matter here.
    loader: { ".node": "empty" },
    plugins: [{
      name: "effect-process-pool-scan",
      setup: (build: PluginBuild) => {
        build.onResolve({ filter: effectSpecifier }, async (args) => {
          if (args.pluginData === inner) return undefined
          const resolved = await build.resolve(args.path, {
            kind: args.kind,
            resolveDir: args.resolveDir,
            importer: args.importer,
            pluginData: inner
          })
          if (resolved.errors.length > 0) throw new Error(`cannot resolve ${args.path}`)
          entries.add(resolved.path)
          return { path: args.path, external: true }
        })
      }
    }]
  })
  const inputs = Object.keys(result.metafile!.inputs).flatMap((input): Array<Stamp> => {
    const file = path.resolve(input)
    try {
      const stat = fs.statSync(file)
      return [[file, stat.size, stat.mtimeMs]]
    } catch {
      // esbuild's own namespaces, not files.
      return []
    }
  })
  // The package.json of each package the entries belong to: another version of `effect` is scanned again.
  const manifests = new Map([...entries].flatMap((entry) => {
    const stamp = packageOf(entry)
    return stamp === undefined ? [] : [[stamp[0], stamp] as const]
  }))
  return { inputs: [...inputs, ...manifests.values()], entries: [...entries].sort() }
}

/**
 * Bundles `entries` into `dir`, and writes its map: each entry's URL to its
 * file in the bundle, and the size and SHA-256 of every file.
 */
const bundle = async (esbuild: Esbuild, entries: ReadonlyArray<string>, dir: string): Promise<void> => {
  const names = new Map(entries.map((entry, i) => [`m${i}`, entry]))
  const result = await esbuild.build({
    entryPoints: Object.fromEntries(names),
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node22",
    outdir: dir,
    outExtension: { ".js": ".mjs" },
    // Identifiers keep their names, so that stack traces through effect still read.
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: "none",
    metafile: true,
    logLevel: "silent"
  })
  const crypto = await import("node:crypto")
  const map: BundleMap = { entries: {}, files: {} }
  for (const [output, { entryPoint }] of Object.entries(result.metafile!.outputs)) {
    // The bundle's own files by name: the directory is renamed once written.
    const name = path.basename(output)
    const file = path.join(dir, name)
    fs.chmodSync(file, 0o600)
    const content = fs.readFileSync(file)
    map.files[name] = [content.length, crypto.hash("sha256", content)]
    if (entryPoint !== undefined) map.entries[pathToFileURL(path.resolve(entryPoint)).href] = name
  }
  fs.writeFileSync(path.join(dir, "map.json"), JSON.stringify(map), { mode: 0o600 })
  fs.chmodSync(dir, 0o700)
}

/** How long an entry of the cache is kept after it was last used: every version of `effect` leaves one. */
const keepFor = 30 * 24 * 60 * 60 * 1000

const day = 24 * 60 * 60 * 1000

/** Marks entries as used, at most once a day, so that `prune` keeps what pools still start from. */
const touch = (entries: ReadonlyArray<string>): void => {
  const now = Date.now()
  for (const entry of entries) {
    try {
      if (now - fs.statSync(entry).mtimeMs > day) fs.utimesSync(entry, now / 1000, now / 1000)
    } catch {
      // Gone meanwhile: rebuilt at the next start.
    }
  }
}

/**
 * Removes what older versions of the worker's graph left in the cache. A
 * pool still running on a removed bundle loses nothing: its next worker
 * fails to load it and takes the plain path (see `BundleFailed` in wire/guard.ts).
 */
const prune = (cacheDir: string): void => {
  const now = Date.now()
  for (const name of fs.readdirSync(cacheDir)) {
    const entry = path.join(cacheDir, name)
    try {
      if (now - fs.statSync(entry).mtimeMs > keepFor) fs.rmSync(entry, { recursive: true, force: true })
    } catch {
      // Removed meanwhile by another pool.
    }
  }
}

/**
 * The bundle for workers of `moduleUrl`, from the cache or built now; or
 * undefined for the plain path. `runtime` is the worker's entry (worker/main.ts),
 * whose own imports of `effect` the bundle serves too.
 *
 * @internal
 */
export const prepare = async (options: {
  readonly moduleUrl: string
  readonly runtime: string
  readonly execArgv: ReadonlyArray<string>
  readonly cacheDir: string
}): Promise<PlanFile | undefined> => {
  if (!options.moduleUrl.startsWith("file:")) return undefined
  let esbuild: Esbuild | undefined
  try {
    fs.mkdirSync(options.cacheDir, { recursive: true, mode: 0o700 })
    // Everything below is trusted because only this user can write here: a link, or a directory others can
    // write, and workers would run what someone else put there.
    if (ours(options.cacheDir, "directory") === undefined) return undefined
    const conditions = conditionsOf(options.execArgv)
    const entryPoints = [fileURLToPath(options.moduleUrl), options.runtime]
    const scanFile = path.join(options.cacheDir, `scan-${hash([entryPoints, conditions, process.version])}.json`)
    let found = readOwn<Scan>(scanFile)
    if (found === undefined || !fresh(found)) {
      esbuild = await loadEsbuild()
      if (esbuild === undefined) return undefined
      const scanned = await scan(esbuild, entryPoints, conditions)
      record(scanFile, JSON.stringify(scanned))
      found = scanned
    }
    if (found.entries.length === 0) return undefined
    const packages = [...new Set(found.entries.map(packageOf).map((p) => JSON.stringify(p)))]
    const dir = path.join(options.cacheDir, `bundle-${hash([found.entries, packages, process.version, layout])}`)
    let map = intact(dir)
    if (map === undefined) {
      setAside(dir)
      esbuild ??= await loadEsbuild()
      if (esbuild === undefined) return undefined
      const tmp = tmpName(dir)
      try {
        await bundle(esbuild, found.entries, tmp)
        publish(tmp, dir)
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true })
      }
      prune(options.cacheDir)
      // Ours, or that of a pool that got there first.
      map = intact(dir)
      if (map === undefined) return undefined
    }
    const sizes: Record<string, number> = {}
    for (const name in map.files) sizes[name] = map.files[name]![0]
    const plan: Plan = { dir, entries: map.entries, sizes }
    const text = JSON.stringify(plan)
    const planFile = path.join(options.cacheDir, `plan-${hash(text)}.json`)
    record(planFile, text)
    touch([scanFile, dir, planFile])
    return planFile
  } catch {
    return undefined
  } finally {
    esbuild?.stop()
  }
}
