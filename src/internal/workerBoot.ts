/**
 * The entry point of a worker whose `effect` comes from a bundle (see
 * bundle.ts): `node workerBoot.ts <map> <module url> <options json>`.
 *
 * It installs a resolve hook that sends every import Node resolves to a
 * module of `effect` to that module's entry in the bundle, then runs
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

/** The exit code of a worker whose bundle failed to load: `BundleFailed` in bundle.ts. */
const BundleFailed = 74

const [mapFile] = process.argv.splice(2, 1)
const base = pathToFileURL(mapFile!)
const dir = new URL(".", base).href
const map: Record<string, string> = JSON.parse(fs.readFileSync(mapFile!, "utf8"))
for (const url in map) map[url] = new URL(map[url]!, base).href

registerHooks({
  resolve: (specifier, context, nextResolve) => {
    // The bundle's files import each other by relative names only.
    if (context.parentURL?.startsWith(dir) && specifier.startsWith("./")) {
      return { url: new URL(specifier, context.parentURL).href, format: "module", shortCircuit: true }
    }
    const resolved = nextResolve(specifier, context)
    const bundled = map[resolved.url]
    return bundled === undefined ? resolved : { url: bundled, format: "module", shortCircuit: true }
  }
})

try {
  await import(import.meta.url.endsWith(".ts") ? "./workerMain.ts" : "./workerMain.js")
} catch (error) {
  process.stderr.write(`effect-process-pool worker ${process.pid}: the bundle ${mapFile} failed to load: ${error}\n`)
  process.exit(BundleFailed)
}
