/**
 * Guards for the single-file form, where one module holds the tasks, the
 * handlers and the program, and the program runs only behind
 * `if (import.meta.main)`.
 *
 * - Without the guard, every worker that imports the module would build a
 *   pool of its own, without end. A pool of the module a worker serves is
 *   refused in that worker, at once, with a message that names the guard.
 * - On a Node without `import.meta.main`, the guard is never true and the
 *   program does nothing. Such a process says so when it exits.
 *
 * @internal
 */

/** What the worker's entry (worker/main.ts) publishes about the process: the module it serves. @internal */
export interface WorkerOfModule {
  readonly moduleUrl: string
  /** Stops the worker at once: it cannot start, and says why. */
  readonly refuse: (message: string) => never
}

/** The global key, shared by every copy of this library loaded in a process. @internal */
export const workerKey: unique symbol = Symbol.for("effect-process-pool/worker") as never

/** The global key under which worker/boot.ts leaves the URL of the bundle's directory. @internal */
export const bundleKey: unique symbol = Symbol.for("effect-process-pool/bundle") as never

/** The exit code of a worker that could not load the bundle `effect` comes from (see bundle.ts). @internal */
export const BundleFailed = 74

/** The module this process serves, when it is a worker. @internal */
export const workerOfModule = (): WorkerOfModule | undefined =>
  (globalThis as { [workerKey]?: WorkerOfModule })[workerKey]

/**
 * Refuses, in a worker, a pool of the very module the worker serves. A pool
 * that a worker builds of another module is allowed.
 *
 * @internal
 */
export const refusePoolOfItself = (moduleUrl: string): void => {
  const worker = workerOfModule()
  if (worker === undefined || worker.moduleUrl !== moduleUrl) return
  worker.refuse(
    `The worker module ${moduleUrl} builds a pool of itself when a worker imports it, so each worker would start ` +
      `workers of its own, without end. Put the program behind \`if (import.meta.main) { ... }\` (Node >= 24.2 or ` +
      `22.18), so that it runs only in the process you started, or move it to a file of its own.`
  )
}

let poolsBuilt = 0

/** Counts a pool built in this process. @internal */
export const poolBuilt = (): void => {
  poolsBuilt++
}

/** Whether a Node version sets `import.meta.main`: 22.18 and later on 22, 24.2 and later. @internal */
export const hasImportMetaMain = (version: string): boolean => {
  const [major, minor] = version.split(".").map(Number)
  return major > 24 || (major === 24 && minor >= 2) || (major === 22 && minor >= 18)
}

const noPoolWarning = (version: string): string =>
  `effect-process-pool: this program imported the library but built no pool. Node ${version} does not set ` +
  `import.meta.main, so a program behind \`if (import.meta.main)\` never runs. Use Node >= 24.2 (or 22.18), or ` +
  `start the program from an entry file of its own that imports the worker module.\n`

/**
 * On a Node without `import.meta.main`, prints why nothing ran when the
 * process exits cleanly having built no pool. Workers stay silent.
 *
 * @internal
 */
export const explainSilentExit = (version: string): void => {
  if (hasImportMetaMain(version) || workerOfModule() !== undefined) return
  process.once("exit", (code) => {
    if (code === 0 && poolsBuilt === 0) process.stderr.write(noPoolWarning(version))
  })
}
