/**
 * `npm run example <file> [args...]`: runs an example with `effect-process-pool`
 * resolved to `src/` rather than `dist/`, through this repository's own export
 * condition, so edits show without a build. Its workers inherit the condition
 * with the rest of its `execArgv`.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"

const [file, ...args] = process.argv.slice(2)

if (file === undefined) {
  const examples = fs.readdirSync(new URL("../examples/", import.meta.url)).filter((name) =>
    name.endsWith(".ts") && !name.endsWith(".test.ts")
  )
  process.stderr.write(
    "usage: npm run example <file> [args...]\n" +
      examples.map((name) => `  npm run example examples/${name}\n`).join("")
  )
  process.exit(2)
}

const child = spawn(process.execPath, ["--conditions=@effect-process-pool/source", file, ...args], { stdio: "inherit" })
// Ctrl-C reaches the example as well (same process group): it decides when to stop.
process.on("SIGINT", () => {})
process.on("SIGTERM", () => child.kill("SIGTERM"))
child.on("exit", (code, signal) => {
  process.exitCode = code ?? 128 + (signal === null ? 0 : os.constants.signals[signal])
})
