/**
 * The entry point of a worker that loads `effect` from a bundle (see
 * bundle.ts): `node worker/boot.ts <plan> <module url> <options json>`.
 *
 * It installs a resolve hook, by which an import that Node resolves to a
 * module of `effect` goes to that module's entry in the bundle, then runs
 * worker/main.ts, which sees the rest of the arguments as its own. It imports
 * nothing of `effect` itself, so that the hook is in place before the first
 * such import.
 *
 * A load hook lets through only the bundle's files that the plan lists, each
 * with the size it was written with: a file that grew or shrank since the
 * parent checked the bundle is not run (a change of the same size is found
 * by the parent's hash only after a worker failed on it). Other hooks still
 * see every load.
 *
 * A bundle that cannot be loaded (removed or damaged after the parent
 * checked it) ends the worker with exit code 74; the pool then starts
 * workers on the plain path, and sets the bundle aside so that the next pool
 * builds it again (see `discard` in bundle.ts).
 *
 * @internal
 */
import * as fs from "node:fs"
import { registerHooks } from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { Plan } from "../processes/bundle.ts"
import { BundleFailed, bundleKey } from "../wire/guard.ts"

const [planFile] = process.argv.splice(2, 1)

/** Ends the worker with the bundle's failure code. */
const failed = (error: unknown): never => {
  process.stderr.write(
    `effect-process-pool worker ${process.pid}: the bundle of ${planFile} failed to load: ${error}\n`
  )
  return process.exit(BundleFailed)
}

/** Installs the hooks; throws when the plan cannot be read. */
const install = (plan: Plan): void => {
  const dir = `${pathToFileURL(plan.dir).href}/`
  const entries = new Map(Object.entries(plan.entries).map(([url, name]) => [url, dir + name]))
  const sizes = new Map(Object.entries(plan.sizes))
  // For main.ts, to tell a bundle that fails to load from a worker module that fails.
  const global = globalThis as { [bundleKey]?: string }
  global[bundleKey] = dir
  registerHooks({
    resolve: (specifier, context, nextResolve) => {
      // The bundle's files import each other by relative names only.
      if (specifier.startsWith("./") && context.parentURL?.startsWith(dir)) {
        return { url: new URL(specifier, context.parentURL).href, format: "module", shortCircuit: true }
      }
      const resolved = nextResolve(specifier, context)
      const url = entries.get(resolved.url)
      return url === undefined ? resolved : { url, format: "module", shortCircuit: true }
    },
    load: (url, context, nextLoad) => {
      if (url.startsWith(dir)) {
        const file = fileURLToPath(url)
        // The path in the message tells main.ts that the bundle failed.
        if (fs.statSync(file).size !== sizes.get(url.slice(dir.length))) {
          throw new Error(`${file} is not a file of the bundle as it was built`)
        }
      }
      return nextLoad(url, context)
    }
  })
}

try {
  install(JSON.parse(fs.readFileSync(planFile!, "utf8")))
} catch (error) {
  failed(error)
}

try {
  await import(import.meta.url.endsWith(".ts") ? "./main.ts" : "./main.js")
} catch (error) {
  failed(error)
}
