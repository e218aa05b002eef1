/**
 * Where case 5's start-up goes, part by part: the medians of fresh processes.
 *
 *   npm run build && node bench/startup/parts.ts [runs]
 *
 * Each run starts this file anew (`--child`), which prints its timeline:
 * - `bare child`: a `node -e` process, from its start to its first line;
 * - `node`: this file's process, from its start to its first line;
 * - `effect`: loading the modules of `effect` a program with a pool imports;
 * - `library`: then importing effect-process-pool;
 * - `worker evaluated`: in a worker process, from its start to the first line
 *   of its module (Node, the bundle of `effect`, the pool's worker runtime);
 * - `make to ready`: `ProcessPool.make` until every worker said Ready, with
 *   1 and then 2 workers, processes and threads;
 * - `first result`: one `submit` once ready (`Square`, as in case 5).
 */
import { spawnSync } from "node:child_process"

interface Timeline {
  readonly node: number
  readonly effect: number
  readonly library: number
  readonly ready: number
  readonly first: number
  readonly evaluated: number
}

const child = async (size: number, isolation: "process" | "thread"): Promise<Timeline> => {
  const node = performance.now()
  await import("effect/Effect")
  await import("effect/Layer")
  await import("effect/Schema")
  await import("effect/Stream")
  const effect = performance.now()
  const { ProcessPool } = await import("effect-process-pool")
  const Effect = await import("effect/Effect")
  const { Square, Started } = await import("../tasks.ts")
  const library = performance.now()
  return Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const pool = yield* ProcessPool.make({ worker: new URL("./probe.ts", import.meta.url), size, isolation })
    const ready = performance.now()
    // The first result, as case 5 has it; then when the worker evaluated its module.
    yield* pool.submit(Square, 7)
    const first = performance.now()
    const evaluated = yield* pool.submit(Started)
    return {
      node,
      effect: effect - node,
      library: library - effect,
      ready: ready - library,
      first: first - ready,
      // A thread's clock starts with its process: only a process's own start is measured.
      evaluated: isolation === "process" ? evaluated : Number.NaN
    }
  })))
}

if (process.argv[2] === "--child") {
  const timeline = await child(Number(process.argv[3]), process.argv[4] as "process" | "thread")
  process.stdout.write(`${JSON.stringify(timeline)}\n`)
  process.exit(0)
}

const runs = Number(process.argv[2] ?? 11)
const median = (values: ReadonlyArray<number>): number => {
  // NaN crosses JSON as null.
  const sorted = values.filter((value) => typeof value === "number" && !Number.isNaN(value)).sort((a, b) => a - b)
  return sorted.length === 0 ? Number.NaN : sorted[sorted.length >> 1]
}
const setups = [[1, "process"], [2, "process"], [1, "thread"], [2, "thread"]] as const
const samples = new Map(setups.map((setup) => [setup, [] as Array<Timeline>]))
const bare: Array<number> = []
for (let run = 0; run < runs; run++) {
  const result = spawnSync(process.execPath, ["-e", "process.stdout.write(String(performance.now()))"], {
    encoding: "utf8"
  })
  bare.push(Number(result.stdout))
  for (const setup of setups) {
    const result = spawnSync(process.execPath, [import.meta.filename, "--child", String(setup[0]), setup[1]], {
      encoding: "utf8"
    })
    if (result.status !== 0) throw new Error(`a run failed: ${result.stderr}`)
    samples.get(setup)!.push(JSON.parse(result.stdout.trim().split("\n").pop()!))
  }
}
const ms = (value: number) => Number.isNaN(value) ? "-" : `${value.toFixed(1)} ms`
console.log(`medians of ${runs} runs each, in fresh processes; a bare child's first line: ${ms(median(bare))}`)
for (const [[size, isolation], timelines] of samples) {
  const part = (key: keyof Timeline) => ms(median(timelines.map((timeline) => timeline[key])))
  const label = `${size} ${isolation}${size > 1 ? (isolation === "process" ? "es" : "s") : ""}`
  const evaluated = isolation === "process"
    ? `; a worker process evaluated its module ${part("evaluated")} after it started`
    : ""
  console.log(
    `${label.padEnd(11)}: node ${part("node")}, effect ${part("effect")}, library ${part("library")}, ` +
      `make to ready ${part("ready")}, first result ${part("first")}${evaluated}`
  )
}
