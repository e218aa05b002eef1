/**
 * The `permissions` option as Node's flags: a worker starts under the
 * permission model (`--permission`), allowed what the option lists and what
 * the pool needs for itself, nothing more.
 *
 * What the pool needs:
 * - to read its own package (the worker's entry is in it);
 * - to read the package of the worker module, and every `node_modules`
 *   above it and above this package (the module and what it imports, in a
 *   workspace too), and the package of `effect` the pool resolves;
 * - to read the bundle cache;
 * - to read and write its compile cache, which is its own: shared only by
 *   workers of the same module under the same permissions (see
 *   `confinedCompileCache`), since a worker that may write where other
 *   workers load code from could plant code in them. For the same reason, a
 *   write grant that holds a cache is refused (see options.ts).
 *
 * Each path is granted as given and as the file system resolves it, so that
 * a link (`current -> releases/7`) is followed.
 *
 * The watchdog is a process, so with `allowChildProcess` off there is none:
 * a handler can then start no process that could outlive its worker.
 *
 * @internal
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { Permissions } from "../../ProcessPool.ts"
import { packageRoot } from "./bundle.ts"

/** `paths` without those that lie inside another of them: a directory grants all it holds. */
const outermost = (paths: ReadonlyArray<string>): Array<string> => {
  const unique = Array.from(new Set(paths)).sort()
  return unique.filter((p) => !unique.some((q) => q !== p && contains(q, p)))
}

/** Whether `dir` is `entry` or holds it. @internal */
export const contains = (dir: string, entry: string): boolean =>
  entry === dir || entry.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep)

/**
 * `entry` as given, resolved, and as the file system finally names it: Node
 * checks a path as it is opened, and a link's target as it is followed, so a
 * grant must name both.
 *
 * @internal
 */
export const namesOf = (entry: string): Array<string> => {
  // Node's own "everything", kept as it is.
  if (entry === "*") return [entry]
  const resolved = path.resolve(entry)
  try {
    return [resolved, fs.realpathSync(resolved)]
  } catch {
    return [resolved]
  }
}

/** Every `node_modules` directory at or above `dir`: where Node looks for the packages a module imports. */
const nodeModulesAbove = (dir: string): Array<string> => {
  const found: Array<string> = []
  for (let at = dir;; at = path.dirname(at)) {
    const candidate = path.join(at, "node_modules")
    if (fs.existsSync(candidate)) found.push(candidate)
    if (path.dirname(at) === at) return found
  }
}

/** This package's root: two directories above this file, in `src/` as in `dist/`. */
const ownRoot = (): string => {
  const index = fileURLToPath(new URL("../../index.ts", import.meta.url))
  return packageRoot(index) ?? path.dirname(index)
}

/** The root of the `effect` package this library resolves. */
const effectRoot = (): string | undefined => {
  try {
    return packageRoot(fileURLToPath(import.meta.resolve("effect")))
  } catch {
    return undefined
  }
}

/** What the pool's own code needs to read, the same for every worker: found once. */
let library: ReadonlyArray<string | undefined> | undefined
const libraryReads = (): ReadonlyArray<string | undefined> => {
  if (library === undefined) {
    const own = ownRoot()
    library = [own, ...nodeModulesAbove(own), effectRoot()]
  }
  return library
}

/**
 * Node's flags for a worker under `permissions`. `moduleUrl` is the worker
 * module, `caches` the directories of the bundle and of the compile cache
 * (when the pool's option names one: see `workerEnv`).
 *
 * @internal
 */
export const permissionFlags = (
  permissions: Permissions,
  moduleUrl: string,
  caches: { readonly bundle: string | undefined; readonly compileCache: string | undefined }
): Array<string> => {
  const file = moduleUrl.startsWith("file:") ? fileURLToPath(moduleUrl) : undefined
  // A module outside any package: the module alone.
  const module = file === undefined ? undefined : packageRoot(file) ?? file
  const reads = [
    ...libraryReads(),
    ...(file === undefined ? [] : [module, ...nodeModulesAbove(path.dirname(file))]),
    caches.bundle,
    caches.compileCache,
    ...(permissions.allowFsRead ?? [])
  ]
  const writes = [caches.compileCache, ...(permissions.allowFsWrite ?? [])]
  const grants = (entries: ReadonlyArray<string | undefined>) =>
    outermost(entries.filter((entry): entry is string => entry !== undefined).flatMap(namesOf))
  return [
    "--permission",
    ...grants(reads).map((entry) => `--allow-fs-read=${entry}`),
    ...grants(writes).map((entry) => `--allow-fs-write=${entry}`),
    ...(permissions.allowChildProcess === true ? ["--allow-child-process"] : []),
    ...(permissions.allowWorker === true ? ["--allow-worker"] : []),
    ...(permissions.allowAddons === true ? ["--allow-addons"] : [])
  ]
}
