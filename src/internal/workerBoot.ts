/**
 * The entry point of a worker that loads `effect` from a bundle (see
 * bundle.ts): `node workerBoot.ts <plan> <module url> <options json>`.
 *
 * It installs a resolve hook, by which an import that Node resolves to a
 * module of `effect` goes to that module's entry in the bundle, then runs
 * workerMain, which sees the rest of the arguments as its own. It imports
 * nothing of `effect` itself, so that the hook is in place before the first
 * such import.
 *
 * A bundle that cannot be loaded (removed or damaged after the parent
 * checked it) ends the worker with exit code 74; the pool then starts
 * workers on the plain path.
 *
 * @internal
 */
import * as fs from "node:fs"
import { registerHooks } from "node:module"
import { pathToFileURL } from "node:url"
import type { Plan } from "./bundle.ts"
import { BundleFailed, bundleKey } from "./entry.ts"

const [planFile] = process.argv.splice(2, 1)
const plan: Plan = JSON.parse(fs.readFileSync(planFile!, "utf8"))
const bundled = new Map<string, string>()
let dir = ""
for (const url in plan.resolve) {
  const entry = pathToFileURL(plan.resolve[url]!).href
  bundled.set(url, entry)
  dir = entry.slice(0, entry.lastIndexOf("/") + 1)
} // For workerMain, to tell a bundle that fails to load from a worker module that fails.

;(globalThis as { [bundleKey]?: string })[bundleKey] = dir

registerHooks({
  resolve: (specifier, context, nextResolve) => {
    // The bundle's files import each other by relative names only.
    if (specifier.startsWith("./") && context.parentURL?.startsWith(dir)) {
      return { url: new URL(specifier, context.parentURL).href, format: "module", shortCircuit: true }
    }
    const resolved = nextResolve(specifier, context)
    const url = bundled.get(resolved.url)
    return url === undefined ? resolved : { url, format: "module", shortCircuit: true }
  }
})

try {
  await import(import.meta.url.endsWith(".ts") ? "./workerMain.ts" : "./workerMain.js")
} catch (error) {
  process.stderr.write(
    `effect-process-pool worker ${process.pid}: the bundle of ${planFile} failed to load: ${error}\n`
  )
  process.exit(BundleFailed)
}
