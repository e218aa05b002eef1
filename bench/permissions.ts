/**
 * What starting the workers under Node's permission model costs: program
 * start to first result (case 5's program, bench/startup/ours.ts), 2
 * workers, with and without `permissions: {}`, alternating, and the ratio of
 * the medians.
 *
 *   npm run build && node bench/permissions.ts [rounds, default 15]
 */
import { spawn } from "node:child_process"

const rounds = Number(process.argv[2] ?? 15)
const program = new URL("./startup/ours.ts", import.meta.url).pathname

/** Milliseconds from spawn to the line "FIRST 49". */
const startUp = (args: ReadonlyArray<string>): Promise<number> =>
  new Promise((resolve, reject) => {
    const started = performance.now()
    const child = spawn(process.execPath, [program, ...args], { stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    let at = 0
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk
      if (at === 0 && out.includes("FIRST 49")) at = performance.now() - started
    })
    child.on("exit", (code) => at > 0 ? resolve(at) : reject(new Error(`exited with ${code}: ${out}`)))
  })

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

const plain: Array<number> = []
const confined: Array<number> = []
// One of each to warm the bundle and compile caches, not counted.
await startUp([])
await startUp(["--permissions"])
for (let i = 0; i < rounds; i++) {
  plain.push(await startUp([]))
  confined.push(await startUp(["--permissions"]))
}
console.log(
  `start to first result, median of ${rounds}: ${median(plain).toFixed(0)} ms without permissions, ` +
    `${median(confined).toFixed(0)} ms with permissions: {} (${(median(confined) / median(plain)).toFixed(3)}x)`
)
