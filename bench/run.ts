/**
 * The benchmark suite: effect-process-pool against its peers, side by side,
 * 2 workers each, in one invocation.
 *
 *   npm run bench                      all cases, 3 rounds
 *   npm run bench -- --quick           smaller counts, 2 rounds
 *   npm run bench -- --only=1,3        some cases
 *   npm run bench -- --pools=ours,piscina --rounds=5 --full-counts
 *
 * Each round runs every pool in its own process (bench/runner.ts, or
 * bench/python/ppe.py), in an order rotated by one each round, then the
 * start-up case (bench/startup/*.ts). The report gives medians over rounds,
 * and each figure as a factor against ours. Results go to bench/results/.
 *
 * Never run in CI: the figures depend on the machine, and on its noise.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import { renderSvg } from "./chart.ts"
import { median } from "./proc.ts"
import type { Config } from "./runner.ts"
import { digest } from "./work.ts"

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

const root = new URL("..", import.meta.url).pathname
const here = (path: string) => new URL(path, import.meta.url).pathname

// Ours runs from the built package, as installed from npm: `npm run bench` builds it first.
const newest = (dir: string): number =>
  Math.max(
    0,
    ...fs.readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => fs.statSync(`${entry.parentPath}/${entry.name}`).mtimeMs)
  )
if (!fs.existsSync(`${root}dist/index.js`) || newest(`${root}dist`) < newest(`${root}src`)) {
  process.stderr.write("dist/ is missing or older than src/: run `npm run bench`, which builds it first\n")
  process.exit(1)
}

const argv = process.argv.slice(2)
const flag = (name: string) => argv.includes(`--${name}`)
const option = (name: string) => argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)

const quick = flag("quick")
const allCases = [1, 2, 3, 4, 5, 6, 7]
const cases = option("only")?.split(",").map(Number).filter((n) => allCases.includes(n)) ?? allCases
const rounds = Number(option("rounds") ?? (quick ? 2 : 3))
const startupRunsPerRound = 2

export interface PoolInfo {
  readonly key: string
  readonly label: string
  /** The npm package whose version is reported. */
  readonly pkg?: string
}

const ALL_POOLS: ReadonlyArray<PoolInfo> = [
  { key: "ours", label: "effect-process-pool" },
  { key: "ours-thread", label: "effect-process-pool (threads)" },
  { key: "piscina", label: "piscina (threads)", pkg: "piscina" },
  { key: "tinypool", label: "tinypool (child_process)", pkg: "tinypool" },
  { key: "workerpool", label: "workerpool (process)", pkg: "workerpool" },
  { key: "poolifier", label: "poolifier (FixedClusterPool)", pkg: "poolifier" },
  { key: "effect-rpc", label: "Effect RPC (forked workers)", pkg: "effect" },
  { key: "python", label: "Python ProcessPoolExecutor" },
  { key: "bare", label: "bare fork (reference)" }
]

const python = (() => {
  const result = spawnSync("python3", ["--version"], { encoding: "utf8" })
  return result.status === 0 ? (result.stdout || result.stderr).trim() : undefined
})()

const wanted = option("pools")?.split(",")
const pools = ALL_POOLS.filter((p) =>
  (p.key === "ours" || p.key === "bare" || wanted === undefined || wanted.includes(p.key) ||
    // Ours on threads runs beside piscina, the thread pool it is measured against.
    (p.key === "ours-thread" && wanted.includes("piscina"))) &&
  (p.key !== "python" || python !== undefined)
)

const cpuTaskMs = 10

/** SHA-256 rounds for about 10 ms per task on this machine, in this Node. */
const calibrate = (): number => {
  const warm = performance.now()
  for (let i = 0; performance.now() - warm < 200; i++) digest(1000, i)
  const samples: Array<number> = []
  for (let i = 0; i < 11; i++) {
    const t = performance.now()
    digest(4000, i)
    samples.push(performance.now() - t)
  }
  return Math.max(100, Math.round((4000 * cpuTaskMs) / median(samples)))
}

const config: Config = {
  cases,
  tiny: quick ? 20_000 : 100_000,
  mapItems: quick ? 200_000 : 1_000_000,
  latencyCalls: quick ? 1_000 : 5_000,
  latencyWarmup: quick ? 2_000 : 10_000,
  cpuTasks: quick ? 60 : 200,
  digestRounds: calibrate(),
  cpuTaskMs,
  capacityDigests: quick ? 30 : 100,
  payloadTasks: quick ? 100 : 1_000,
  payloadInFlight: 8,
  budgetMs: flag("full-counts") ? 0 : quick ? 2_000 : 4_000,
  tinyMin: quick ? 10_000 : 20_000,
  payloadMin: quick ? 50 : 100
}

// ---------------------------------------------------------------------------
// Running processes
// ---------------------------------------------------------------------------

interface RunResult {
  readonly cases: Record<string, any>
  readonly error?: string
  readonly wallMs: number
}

/** Runs one process in its own process group; kills the whole group on timeout. */
const runProcess = (
  command: string,
  args: ReadonlyArray<string>,
  timeoutMs: number,
  onLine: (line: string, atMs: number) => void
): Promise<
  { readonly code: number | null; readonly stderr: string; readonly timedOut: boolean; readonly ms: number }
> =>
  new Promise((resolve) => {
    const started = performance.now()
    const child = spawn(command, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"], detached: true })
    let stdout = ""
    let stderr = ""
    let timedOut = false
    child.stdout.on("data", (chunk: Buffer) => {
      const at = performance.now() - started
      stdout += chunk.toString("utf8")
      let newline = stdout.indexOf("\n")
      while (newline >= 0) {
        onLine(stdout.slice(0, newline), at)
        stdout = stdout.slice(newline + 1)
        newline = stdout.indexOf("\n")
      }
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-4000)
    })
    const timer = setTimeout(() => {
      timedOut = true
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        // gone already
      }
    }, timeoutMs)
    child.on("close", (code) => {
      clearTimeout(timer)
      // Reap anything the pool left behind in its group.
      try {
        process.kill(-child.pid!, "SIGKILL")
      } catch {
        // nothing left
      }
      resolve({ code, stderr, timedOut, ms: performance.now() - started })
    })
  })

const runnerCommand = (pool: string): [string, Array<string>] =>
  pool === "python"
    ? ["python3", [here("./python/ppe.py"), `--config=${JSON.stringify(config)}`]]
    : [process.execPath, [here("./runner.ts"), `--pool=${pool}`, `--config=${JSON.stringify(config)}`]]

const runPool = async (pool: string): Promise<RunResult> => {
  const found: Record<string, any> = {}
  let done = false
  const [command, args] = runnerCommand(pool)
  const result = await runProcess(command, args, quick ? 120_000 : 300_000, (line) => {
    if (line.startsWith("@@CASE ")) {
      const { key, value } = JSON.parse(line.slice(7))
      found[key] = value
    } else if (line === "@@DONE") {
      done = true
    }
  })
  const error = result.timedOut
    ? `timed out after ${(result.ms / 1000).toFixed(0)} s`
    : !done
    ? `exited with code ${result.code}: ${result.stderr.trim().split("\n").slice(-3).join(" | ")}`
    : undefined
  return error === undefined ? { cases: found, wallMs: result.ms } : { cases: found, error, wallMs: result.ms }
}

const startupCommand = (pool: string): [string, Array<string>] =>
  pool === "python"
    ? ["python3", [here("./python/startup.py")]]
    : [process.execPath, [here(`./startup/${pool}.ts`)]]

/** Case 5: milliseconds from spawn to the line "FIRST 49", or an error. */
const runStartup = async (pool: string): Promise<number | string> => {
  let first: number | undefined
  let answer: string | undefined
  const [command, args] = startupCommand(pool)
  const result = await runProcess(command, args, 30_000, (line, at) => {
    if (line.startsWith("FIRST ") && first === undefined) {
      first = at
      answer = line.slice(6).trim()
    }
  })
  if (first === undefined) return result.timedOut ? "timed out" : `no result: ${result.stderr.trim().slice(-300)}`
  if (answer !== "49") return `wrong result ${answer}`
  return first
}

/**
 * What loading `effect` costs a parent, in start-up ms and RSS MB: the median
 * difference between a process that loads it and a bare one (see
 * bench/startup/effect-floor.ts). The floor of cases 5 and 6 for a pool built
 * on Effect, next to a peer that is not.
 */
const effectFloor = async (): Promise<{ readonly ms: number; readonly mb: number } | undefined> => {
  const sample = async (bare: boolean) => {
    let loaded: [number, number] | undefined
    await runProcess(process.execPath, [here("./startup/effect-floor.ts"), ...(bare ? ["--bare"] : [])], 30_000, (
      line
    ) => {
      const [word, ms, mb] = line.trim().split(" ")
      if (word === "LOADED") loaded = [Number(ms), Number(mb)]
    })
    return loaded
  }
  const ms: Array<number> = []
  const mb: Array<number> = []
  for (let i = 0; i < 5; i++) {
    const [bare, loaded] = [await sample(true), await sample(false)]
    if (bare === undefined || loaded === undefined) return undefined
    ms.push(loaded[0] - bare[0])
    mb.push(loaded[1] - bare[1])
  }
  return { ms: median(ms), mb: median(mb) }
}

// ---------------------------------------------------------------------------
// The rounds
// ---------------------------------------------------------------------------

/** Busy clock ticks of the whole machine, and the ticks used by this process and its reaped children. */
const ticks = (): { readonly busy: number; readonly ours: number } | undefined => {
  try {
    const fields = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number)
    const busy = fields.reduce((a, b) => a + b, 0) - fields[3] - (fields[4] ?? 0)
    const self = fs.readFileSync("/proc/self/stat", "utf8")
    const own = self.slice(self.lastIndexOf(")") + 2).split(" ").map(Number)
    // utime, stime, cutime, cstime are fields 14 to 17 of stat; here indexed from field 3
    return { busy, ours: own[11] + own[12] + own[13] + own[14] }
  } catch {
    return undefined
  }
}

/**
 * CPUs used by other processes while `f` ran: the machine's busy time less
 * ours and our children's (the runners reap their workers, and we reap them).
 */
const measuringOthers = async <A>(f: () => Promise<A>): Promise<[A, number]> => {
  const before = ticks()
  const t = performance.now()
  const a = await f()
  const after = ticks()
  const seconds = (performance.now() - t) / 1000
  if (before === undefined || after === undefined || seconds <= 0) return [a, NaN]
  const hz = 100
  return [a, Math.max(0, (after.busy - before.busy - (after.ours - before.ours)) / hz / seconds)]
}

/** The share of both CPUs that was busy over `ms`, while this suite had nothing running. */
const backgroundCpu = async (ms: number): Promise<number> => {
  const sample = () => {
    const fields = fs.readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number)
    const idle = fields[3] + (fields[4] ?? 0)
    return { idle, total: fields.reduce((a, b) => a + b, 0) }
  }
  try {
    const a = sample()
    await new Promise((resolve) => setTimeout(resolve, ms))
    const b = sample()
    return b.total === a.total ? 0 : 1 - (b.idle - a.idle) / (b.total - a.total)
  } catch {
    return NaN
  }
}

/**
 * Other work on the machine (another test run, say) skews every figure. Wait
 * up to `patienceMs` for the CPUs to be quiet, and return the busy share seen last.
 */
const waitForQuiet = async (patienceMs: number): Promise<number> => {
  const deadline = performance.now() + patienceMs
  let busy = await backgroundCpu(500)
  while (busy > 0.15 && performance.now() < deadline) {
    log(`  the machine is busy (${(busy * 100).toFixed(0)} % CPU used by other processes); waiting for it to settle`)
    await new Promise((resolve) => setTimeout(resolve, 4000))
    busy = await backgroundCpu(500)
  }
  return busy
}

const rotate = <A>(items: ReadonlyArray<A>, by: number): Array<A> => {
  const k = by % items.length
  return [...items.slice(k), ...items.slice(0, k)]
}

/** The version of a peer, from bench/node_modules (see bench/package.json), or of effect, from the root's. */
const versionOf = (pkg: string): string => {
  for (const dir of [`${root}bench/node_modules`, `${root}node_modules`]) {
    try {
      return JSON.parse(fs.readFileSync(`${dir}/${pkg}/package.json`, "utf8")).version
    } catch {
      // not in this one
    }
  }
  return "not installed"
}

const log = (line: string) => process.stderr.write(`${line}\n`)

const startedAt = new Date()
if (!process.version.startsWith("v24") && Number(process.version.slice(1).split(".")[0]) < 24) {
  log(`warning: running on Node ${process.version}; the suite expects Node 24 (npm run bench uses the project's)`)
}
log(
  `effect-process-pool bench: ${quick ? "quick" : "full"}, cases ${cases.join(",")}, ${rounds} rounds, ` +
    `pools ${pools.map((p) => p.key).join(", ")}; ${config.digestRounds} SHA-256 rounds = ~${cpuTaskMs} ms per CPU task`
)
const loadBefore = os.loadavg()

const raw: Array<Record<string, RunResult>> = []
const startups: Record<string, Array<number>> = {}
const startupErrors: Record<string, Array<string>> = {}
const runnerCases = cases.filter((c) => c !== 5)

const background: Array<number> = []
const otherCpu: Array<{ readonly round: number; readonly pool: string; readonly cpus: number }> = []
for (let r = 0; r < rounds; r++) {
  const order = rotate(pools, r)
  const round: Record<string, RunResult> = {}
  background.push(await waitForQuiet(quick ? 20_000 : 60_000))
  if (runnerCases.length > 0) {
    for (const [i, pool] of order.entries()) {
      if (i > 0) await waitForQuiet(quick ? 10_000 : 30_000)
      const [result, others] = await measuringOthers(() => runPool(pool.key))
      round[pool.key] = result
      otherCpu.push({ round: r + 1, pool: pool.key, cpus: others })
      log(
        `round ${r + 1}/${rounds}: ${pool.key.padEnd(11)} ${(result.wallMs / 1000).toFixed(1).padStart(5)} s` +
          (others > 0.1 ? `  (other processes used ${others.toFixed(2)} CPUs meanwhile)` : "") +
          (result.error === undefined ? "" : `  FAILED: ${result.error}`) +
          Object.entries(result.cases).filter(([, v]) => v?.error).map(([k, v]) => `  case ${k} failed: ${v.error}`)
            .join("")
      )
    }
  }
  raw.push(round)
  if (cases.includes(5)) {
    const [, others] = await measuringOthers(async () => {
      for (let k = 0; k < startupRunsPerRound; k++) {
        for (const pool of order) {
          const ms = await runStartup(pool.key)
          if (typeof ms === "number") (startups[pool.key] ??= []).push(ms)
          else (startupErrors[pool.key] ??= []).push(ms)
        }
      }
    })
    otherCpu.push({ round: r + 1, pool: "start-up runs", cpus: others })
    log(
      `round ${r + 1}/${rounds}: start-up runs done` +
        (others > 0.1 ? `  (other processes used ${others.toFixed(2)} CPUs meanwhile)` : "")
    )
  }
}

// ---------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------

/** A figure of one pool in one round, or undefined when it was not measured. */
type Getter = (round: Record<string, RunResult>, pool: string) => number | undefined

const caseOf = (round: Record<string, RunResult>, pool: string, key: string): any => {
  const value = round[pool]?.cases[key]
  return value === undefined || value.error !== undefined ? undefined : value
}

const nodeMbEach = (() => {
  for (const round of raw) {
    for (const pool of Object.keys(round)) {
      const c = caseOf(round, pool, "7")
      if (pool !== "python" && c?.mbEach !== undefined) return c.mbEach as number
    }
  }
  return undefined
})()

/** Case 4: serial time in a bare child over the pool's time; for bare, the machine's capacity. */
const speedupOf: Getter = (round, pool) => {
  const c = caseOf(round, pool, "4")
  if (c === undefined) return undefined
  return pool === "bare" ? c.capacity : c.speedup
}

export interface Metric {
  readonly id: string
  readonly caseNo: number
  readonly title: string
  readonly unit: string
  readonly better: "higher" | "lower"
  readonly get: Getter
  readonly log?: boolean
  /** Whether the bare reference gets a row. */
  readonly bare?: boolean
}

const metrics: ReadonlyArray<Metric> = [
  {
    id: "1",
    caseNo: 1,
    title: "tiny tasks submitted at once",
    unit: "tasks/s",
    better: "higher",
    log: true,
    get: (r, p) => caseOf(r, p, "1")?.perSecond
  },
  {
    id: "2",
    caseNo: 2,
    title: "map over tiny items",
    unit: "items/s",
    better: "higher",
    log: true,
    get: (r, p) => caseOf(r, p, "2")?.perSecond
  },
  {
    id: "3.p50",
    caseNo: 3,
    title: "one call at a time, p50 round trip",
    unit: "µs",
    better: "lower",
    bare: true,
    get: (r, p) => caseOf(r, p, "3")?.p50Us
  },
  {
    id: "3.p99",
    caseNo: 3,
    title: "one call at a time, p99 round trip",
    unit: "µs",
    better: "lower",
    bare: true,
    get: (r, p) => caseOf(r, p, "3")?.p99Us
  },
  {
    id: "4.speedup",
    caseNo: 4,
    title: "CPU-bound speedup over serial",
    unit: "x",
    better: "higher",
    bare: true,
    get: speedupOf
  },
  {
    id: "4.capacity",
    caseNo: 4,
    title: "CPU-bound speedup as % of the machine's capacity",
    unit: "%",
    better: "higher",
    // Against the capacity measured in the same runner, just after the pool's run (bare
    // children, same work); Python's runner has none and uses the bare runner's of its round.
    get: (r, p) => {
      const s = speedupOf(r, p)
      const capacity = caseOf(r, p, "4")?.capacity ?? caseOf(r, "bare", "4")?.capacity
      return s === undefined || capacity === undefined ? undefined : (100 * s) / capacity
    }
  },
  {
    id: "5",
    caseNo: 5,
    title: "program start to first result",
    unit: "ms",
    better: "lower",
    bare: true,
    get: () => undefined
  },
  {
    id: "6",
    caseNo: 6,
    title: "idle memory, parent + children RSS",
    unit: "MB",
    better: "lower",
    bare: true,
    get: (r, p) => caseOf(r, p, "6")?.totalMB
  },
  {
    id: "7",
    caseNo: 7,
    title: "payload-heavy: ~100 KB object + 1 MiB Uint8Array per task",
    unit: "MB/s",
    better: "higher",
    get: (r, p) => {
      const c = caseOf(r, p, "7")
      if (c === undefined) return undefined
      return p === "python" && nodeMbEach !== undefined ? c.perSecond * nodeMbEach : c.mbPerSecond
    }
  }
]

const medianOf = (metric: Metric, pool: string): number | undefined => {
  if (metric.id === "5") {
    const samples = startups[pool]
    return samples === undefined || samples.length === 0 ? undefined : median(samples)
  }
  const values = raw.map((round) => metric.get(round, pool)).filter((v): v is number => v !== undefined)
  return values.length === 0 ? undefined : median(values)
}

const samplesOf = (metric: Metric, pool: string): Array<number> =>
  metric.id === "5"
    ? (startups[pool] ?? [])
    : raw.map((round) => metric.get(round, pool)).filter((v): v is number => v !== undefined)

/** How many times better ours is than `other`: > 1 means ours is better. */
const advantage = (metric: Metric, ours: number, other: number): number =>
  metric.better === "higher" ? ours / other : other / ours

const medians: Record<string, Record<string, number | undefined>> = {}
for (const metric of metrics) {
  if (!cases.includes(metric.caseNo)) continue
  medians[metric.id] = {}
  for (const pool of pools) {
    if (pool.key === "bare" && !metric.bare) continue
    medians[metric.id][pool.key] = medianOf(metric, pool.key)
  }
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

const si = (v: number): string =>
  v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e4 ? `${(v / 1e3).toFixed(1)}k` : v >= 100 ? v.toFixed(0) : v.toFixed(2)

const fmt = (metric: Metric, v: number | undefined): string => {
  if (v === undefined || !Number.isFinite(v)) return "—"
  switch (metric.unit) {
    case "tasks/s":
    case "items/s":
      return si(v)
    case "µs":
      return `${v.toFixed(1)} µs`
    case "x":
      return `${v.toFixed(2)}x`
    case "%":
      return `${v.toFixed(1)} %`
    case "ms":
      return `${v.toFixed(0)} ms`
    case "MB":
      return `${v.toFixed(1)} MB`
    case "MB/s":
      return `${v.toFixed(1)} MB/s`
    default:
      return v.toFixed(2)
  }
}

const labelOf = (key: string) => ALL_POOLS.find((p) => p.key === key)?.label ?? key

/** Per-pool notes: counts actually run, how map and bytes were done. */
const detailOf = (metric: Metric, pool: string): string => {
  const any = raw.map((round) => caseOf(round, pool, String(metric.caseNo))).find((c) => c !== undefined)
  switch (metric.id) {
    case "1": {
      const ns = raw.map((round) => caseOf(round, pool, "1")?.tasks).filter((n) => n !== undefined)
      return ns.length === 0 ? "" : `n=${[...new Set(ns)].map((n) => si(n)).join("/")}`
    }
    case "2":
      return any?.note ?? ""
    case "4.speedup":
      if (pool === "bare") return "machine capacity: 2 bare forks at once vs 1"
      if (any?.perTaskMs === undefined) return ""
      if (pool === "python") return `serial ${any.perTaskMs.toFixed(1)} ms/task, in-process`
      return `serial ${any.perTaskMs.toFixed(1)} ms/task; capacity next to it ${
        (medianOf({ ...metric, get: (r, p) => caseOf(r, p, "4")?.capacity }, pool) ?? NaN).toFixed(2)
      }x`
    case "5": {
      const n = startups[pool]?.length ?? 0
      const errors = startupErrors[pool]?.length ?? 0
      return `${n} runs${errors > 0 ? `, ${errors} failed: ${startupErrors[pool]![0]}` : ""}`
    }
    case "6": {
      const c = raw.map((round) => caseOf(round, pool, "6")).find((c) => c !== undefined)
      if (c === undefined) return ""
      return c.childPids.length === 0
        ? "threads: parent only"
        : `parent ${c.parentMB.toFixed(0)} + children ${c.childrenMB.map((m: number) => m.toFixed(0)).join(" + ")}`
    }
    case "7": {
      const ns = raw.map((round) => caseOf(round, pool, "7")?.tasks).filter((n) => n !== undefined)
      const perSecond = medianOf({ ...metric, get: (r, p) => caseOf(r, p, "7")?.perSecond }, pool)
      return ns.length === 0
        ? ""
        : `${perSecond?.toFixed(0)} tasks/s, n=${[...new Set(ns)].join("/")}; ${any?.note ?? ""}`
    }
    default:
      return ""
  }
}

const lines: Array<string> = []
const out = (line = "") => lines.push(line)
const pad = (s: string, n: number) => s.length >= n ? s : s + " ".repeat(n - s.length)
const padL = (s: string, n: number) => s.length >= n ? s : " ".repeat(n - s.length) + s

out()
out(
  `effect-process-pool benchmark: ${quick ? "quick" : "full"} run, 2 workers each, medians of ${rounds} rounds ` +
    `(start-up: of ${rounds * startupRunsPerRound} runs)`
)
out(
  `Node ${process.version}, ${python ?? "no python3"}, ${os.availableParallelism()} CPUs (${
    os.cpus()[0]?.model ?? "?"
  }), load ${loadBefore.map((l) => l.toFixed(2)).join(" ")}`
)
out(
  `Background CPU before each round (other processes): ${
    background.map((b) => `${(b * 100).toFixed(0)} %`).join(", ")
  }${background.some((b) => b > 0.15) ? "  WARNING: the machine was busy; figures are skewed" : ""}`
)
const busiest = otherCpu.reduce<typeof otherCpu[number] | undefined>(
  (acc, o) => acc === undefined || o.cpus > acc.cpus ? o : acc,
  undefined
)
if (busiest !== undefined) {
  out(
    `Other processes during the runs: ${
      (otherCpu.reduce((a, o) => a + (Number.isFinite(o.cpus) ? o.cpus : 0), 0) / otherCpu.length).toFixed(2)
    } CPUs on average, at most ${busiest.cpus.toFixed(2)} (round ${busiest.round}, ${busiest.pool})${
      busiest.cpus > 0.15 ? "  WARNING: figures of that run are skewed" : ""
    }`
  )
}
out(`"vs ours": how many times better ours is than that row (> 1: ours better, < 1: ours worse).`)
for (const metric of metrics) {
  if (!cases.includes(metric.caseNo)) continue
  const ours = medians[metric.id]?.ours
  out()
  out(`${metric.id}. ${metric.title} (${metric.unit}, ${metric.better} is better)`)
  for (const pool of pools) {
    if (!(pool.key in medians[metric.id])) continue
    const value = medians[metric.id][pool.key]
    const ratio = pool.key === "ours" || ours === undefined || value === undefined
      ? ""
      : `${advantage(metric, ours, value).toFixed(2)}x`
    out(
      `  ${pad(pool.label, 30)} ${padL(fmt(metric, value), 12)}  ${padL(ratio, 7)}   ${detailOf(metric, pool.key)}`
    )
  }
}

// The goals of performance round 2: each against the best process pool of the same run (Python and
// threads aside), so that the machine's speed on the day cancels out.
interface Target {
  readonly caseNo: number
  readonly text: string
  readonly met: boolean | undefined
  readonly detail: string
}
const m = (id: string, pool: string) => medians[id]?.[pool]
const processPeers = ["tinypool", "workerpool", "poolifier", "effect-rpc"]
/** The best process peer of a metric: the lowest or the highest, with its label. */
const bestPeer = (id: string, better: "lower" | "higher"): [string, number] | undefined =>
  processPeers.flatMap((pool) => {
    const value = m(id, pool)
    return value === undefined || !Number.isFinite(value) ? [] : [[pool, value] as [string, number]]
  }).reduce<[string, number] | undefined>(
    (acc, next) => acc === undefined || (better === "lower" ? next[1] < acc[1] : next[1] > acc[1]) ? next : acc,
    undefined
  )
const targets: Array<Target> = []
/** ours against `factor` times the best process peer: at most (lower is better) or at least. */
const against = (
  caseNo: number,
  id: string,
  text: string,
  factor: number,
  better: "lower" | "higher",
  unit: string
) => {
  if (!cases.includes(caseNo)) return
  const ours = m(id, "ours")
  const best = bestPeer(id, better)
  const ok = ours !== undefined && best !== undefined
  targets.push({
    caseNo,
    text,
    met: ok ? (better === "lower" ? ours! <= factor * best![1] : ours! >= factor * best![1]) : undefined,
    detail: ok
      ? `${fmtValue(ours!)} ${unit} = ${(ours! / best![1]).toFixed(2)}x ${labelOf(best![0])} ${
        fmtValue(best![1])
      } ${unit}`
      : ""
  })
}
const fmtValue = (v: number) => v >= 10_000 ? si(v) : v.toFixed(1)
if (cases.includes(1)) {
  const ours = m("1", "ours")
  const poolifier = m("1", "poolifier")
  targets.push({
    caseNo: 1,
    text: "tiny tasks: >= 3x poolifier",
    met: ours !== undefined && poolifier !== undefined ? ours >= 3 * poolifier : undefined,
    detail: ours !== undefined && poolifier !== undefined
      ? `${si(ours)} tasks/s = ${(ours / poolifier).toFixed(2)}x poolifier`
      : ""
  })
}
against(2, "2", "map: >= the best hand-chunked process peer", 1, "higher", "items/s")
against(3, "3.p50", "p50 <= the best process peer", 1, "lower", "µs")
against(3, "3.p99", "p99 <= the best process peer", 1, "lower", "µs")
if (cases.includes(3)) {
  const ours = m("3.p50", "ours")
  const floor = m("3.p50", "bare")
  targets.push({
    caseNo: 3,
    text: "p50 <= 1.15x the bare fork ping-pong",
    met: ours !== undefined && floor !== undefined ? ours <= 1.15 * floor : undefined,
    detail: ours !== undefined && floor !== undefined
      ? `${ours.toFixed(1)} µs = ${(ours / floor).toFixed(2)}x ${floor.toFixed(1)} µs`
      : ""
  })
}
if (cases.includes(4)) {
  const pct = m("4.capacity", "ours")
  targets.push({
    caseNo: 4,
    text: "CPU-bound: >= 98% of the capacity measured next to it",
    met: pct === undefined ? undefined : pct >= 98,
    detail: pct === undefined ? "" : `${pct.toFixed(1)} %`
  })
}
/**
 * Round 3: what a pool adds to its floor, ours against tinypool. tinypool's floor is the bare fork's row (a
 * plain parent, 2 empty children, one result); ours is the same with `effect` loaded in the parent first.
 */
const effectLoad = cases.includes(5) || cases.includes(6) ? await effectFloor() : undefined
const addedToFloor = (caseNo: 5 | 6, text: string, unit: string) => {
  if (!cases.includes(caseNo)) return
  const id = String(caseNo)
  const [ours, tiny, bare] = [m(id, "ours"), m(id, "tinypool"), m(id, "bare")]
  const load = caseNo === 5 ? effectLoad?.ms : effectLoad?.mb
  if (ours === undefined || tiny === undefined || bare === undefined || load === undefined) {
    return targets.push({ caseNo, text, met: undefined, detail: "needs tinypool, the bare fork and the effect floor" })
  }
  const oursAdded = ours - (bare + load)
  const tinyAdded = tiny - bare
  targets.push({
    caseNo,
    text,
    met: oursAdded <= tinyAdded,
    detail:
      `ours ${fmtValue(ours)} - (${fmtValue(bare)} + effect ${fmtValue(load)}) = ${fmtValue(oursAdded)} ${unit}; ` +
      `tinypool ${fmtValue(tiny)} - ${fmtValue(bare)} = ${fmtValue(tinyAdded)} ${unit}` +
      (oursAdded > 0 && tinyAdded > 0 ? `: ${(oursAdded / tinyAdded).toFixed(2)}x` : "")
  })
}
addedToFloor(5, "start-up added to its floor <= tinypool's", "ms")
addedToFloor(6, "idle memory added to its floor <= tinypool's", "MB")
against(7, "7", "bytes >= the best process peer", 1, "higher", "MB/s")
if (cases.includes(7)) {
  const ours = m("7", "ours")
  const threads = m("7", "piscina")
  targets.push({
    caseNo: 7,
    text: "bytes, stretch: >= piscina (threads)",
    met: ours !== undefined && threads !== undefined ? ours >= threads : undefined,
    detail: ours !== undefined && threads !== undefined
      ? `${ours.toFixed(1)} MB/s = ${(ours / threads).toFixed(2)}x ${threads.toFixed(1)} MB/s`
      : ""
  })
}
// Threads: ours on worker threads against piscina, the thread pool of Node's users.
const floor = effectLoad
const threadGoals: Array<Target> = []
const versus = (caseNo: number, id: string, text: string, better: "higher" | "lower", factor = 1, extra = 0) => {
  if (!cases.includes(caseNo)) return
  const ours = m(id, "ours-thread")
  const theirs = m(id, "piscina")
  const bound = theirs === undefined ? undefined : better === "higher" ? theirs * factor : theirs * factor + extra
  threadGoals.push({
    caseNo,
    text,
    met: ours === undefined || bound === undefined ? undefined : better === "higher" ? ours >= bound : ours <= bound,
    detail: ours === undefined || theirs === undefined
      ? ""
      : `${fmtValue(ours)} against ${fmtValue(theirs)}${extra > 0 ? ` + ${fmtValue(extra)}` : ""}`
  })
}
versus(1, "1", "tiny tasks: >= 3x piscina", "higher", 3)
versus(2, "2", "map: >= piscina hand-chunked", "higher")
versus(3, "3.p50", "p50 <= piscina", "lower")
versus(3, "3.p99", "p99 <= piscina", "lower")
versus(5, "5", `start to first result <= piscina + effect's load`, "lower", 1, floor?.ms ?? 0)
versus(6, "6", `idle memory <= piscina + effect's load`, "lower", 1, floor?.mb ?? 0)
versus(7, "7", "bytes >= piscina", "higher")
if (floor !== undefined) {
  out()
  out(
    `Loading effect costs a parent ${floor.ms.toFixed(0)} ms and ${
      floor.mb.toFixed(1)
    } MB (bench/startup/effect-floor.ts)`
  )
  const bare5 = m("5", "bare")
  const bare6 = m("6", "bare")
  if (bare5 !== undefined && bare6 !== undefined) {
    out(
      `Floors: a plain parent with 2 bare children ${bare5.toFixed(0)} ms, ${bare6.toFixed(1)} MB; with effect ` +
        `loaded first ${(bare5 + floor.ms).toFixed(0)} ms, ${(bare6 + floor.mb).toFixed(1)} MB`
    )
  }
}

out()
out("Goals (performance round 3; against the best process peer of this run, and each pool's floor)")
for (const t of targets) {
  out(`  ${t.caseNo}. ${pad(t.text, 54)} ${pad(t.met === undefined ? "n/a" : t.met ? "MET" : "MISSED", 7)} ${t.detail}`)
}
if (threadGoals.length > 0) {
  out()
  out("Goals for threads (effect-process-pool (threads) against piscina)")
  for (const t of threadGoals) {
    out(
      `  ${t.caseNo}. ${pad(t.text, 54)} ${pad(t.met === undefined ? "n/a" : t.met ? "MET" : "MISSED", 7)} ${t.detail}`
    )
  }
}
const failures = Object.entries(raw.reduce<Record<string, Array<string>>>((acc, round, r) => {
  for (const [pool, result] of Object.entries(round)) {
    if (result.error !== undefined) (acc[pool] ??= []).push(`round ${r + 1}: ${result.error}`)
    for (const [key, value] of Object.entries(result.cases)) {
      if (value?.error !== undefined) (acc[pool] ??= []).push(`round ${r + 1}, case ${key}: ${value.error}`)
    }
  }
  return acc
}, {}))
if (failures.length > 0) {
  out()
  out("Failures")
  for (const [pool, list] of failures) for (const f of list) out(`  ${labelOf(pool)}: ${f}`)
}

const finishedAt = new Date()
out()
out(`Took ${((finishedAt.getTime() - startedAt.getTime()) / 1000).toFixed(0)} s.`)
process.stdout.write(lines.join("\n") + "\n")

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

const report = {
  startedAt: startedAt.toISOString(),
  finishedAt: finishedAt.toISOString(),
  machine: {
    node: process.version,
    python: python ?? null,
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? null,
    platform: `${os.platform()} ${os.release()}`,
    totalMemMB: Math.round(os.totalmem() / 1e6),
    loadBefore,
    loadAfter: os.loadavg(),
    backgroundCpuBeforeRounds: background,
    otherProcessesCpus: otherCpu
  },
  options: { quick, cases, rounds, startupRunsPerRound, pools: pools.map((p) => p.key) },
  config,
  versions: Object.fromEntries(pools.filter((p) => p.pkg !== undefined).map((p) => [p.key, versionOf(p.pkg!)])),
  metrics: metrics.filter((metric) => cases.includes(metric.caseNo)).map((metric) => ({
    id: metric.id,
    title: metric.title,
    unit: metric.unit,
    better: metric.better,
    medians: medians[metric.id],
    samples: Object.fromEntries(Object.keys(medians[metric.id]).map((pool) => [pool, samplesOf(metric, pool)])),
    vsOurs: Object.fromEntries(
      Object.entries(medians[metric.id]).filter(([pool, v]) => pool !== "ours" && v !== undefined).map((
        [pool, v]
      ) => [pool, medians[metric.id].ours === undefined ? null : advantage(metric, medians[metric.id].ours!, v!)])
    ),
    details: Object.fromEntries(Object.keys(medians[metric.id]).map((pool) => [pool, detailOf(metric, pool)]))
  })),
  targets,
  rounds: raw,
  startup: { samples: startups, errors: startupErrors },
  table: lines.join("\n")
}

const dir = here("./results/")
fs.mkdirSync(dir, { recursive: true })
const stamp = startedAt.toISOString().replace(/[:.]/g, "-")
const json = JSON.stringify(report, null, 2)
fs.writeFileSync(`${dir}${stamp}.json`, json)
fs.writeFileSync(`${dir}latest.json`, json)
fs.writeFileSync(
  `${dir}latest.svg`,
  renderSvg({
    title: `effect-process-pool vs peers: 2 workers, medians of ${rounds} rounds (${quick ? "quick" : "full"} run)`,
    subtitle: `Node ${process.version}, ${python ?? "no python3"}, ${os.availableParallelism()} CPUs, ${
      startedAt.toISOString().slice(0, 16).replace("T", " ")
    } UTC`,
    pools: pools.map((p) => ({ key: p.key, label: p.label })),
    panels: metrics.filter((metric) => cases.includes(metric.caseNo) && metric.id !== "4.capacity").map((metric) => ({
      title: `${metric.id}. ${metric.title}`,
      unit: metric.unit,
      better: metric.better,
      log: metric.log === true,
      values: Object.entries(medians[metric.id]).map(([pool, value]) => ({ pool, value })),
      format: (v: number) => fmt(metric, v),
      labels: metric.id === "4.speedup" ? { bare: "machine capacity (bare forks)" } : {}
    }))
  })
)
log(`wrote bench/results/${stamp}.json, bench/results/latest.json and bench/results/latest.svg`)
process.exit(0)
