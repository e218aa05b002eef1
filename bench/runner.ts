/**
 * Runs the selected cases against one pool, in this process, and prints each
 * case's figures as a line `@@CASE <json>`. The orchestrator (bench/run.ts)
 * starts one runner per pool and round, so pools never share a process.
 *
 *   node bench/runner.ts --pool=ours --config='{"cases":[1,3],...}'
 */
import { fork } from "node:child_process"
import type { Adapter, DigestInput } from "./pools/types.ts"
import { descendants, percentile, treeMemory } from "./proc.ts"
import { checksum, digest, makeBytes, makeDoc, type Payload } from "./work.ts"

export interface Config {
  readonly cases: ReadonlyArray<number>
  /** Case 1: tiny tasks submitted at once. */
  readonly tiny: number
  /** Case 2: items in the map. */
  readonly mapItems: number
  /** Case 3: sequential calls measured, after this many unmeasured ones (the same for every pool). */
  readonly latencyCalls: number
  readonly latencyWarmup: number
  /** Case 4: CPU-bound tasks, and the SHA-256 rounds of each. */
  readonly cpuTasks: number
  readonly digestRounds: number
  /** Case 4: the intended time of one task; Python calibrates its own rounds to it. */
  readonly cpuTaskMs: number
  /** Case 4: digests per bare child when measuring the machine's capacity. */
  readonly capacityDigests: number
  /** Case 7: tasks, and how many may be in flight at once. */
  readonly payloadTasks: number
  readonly payloadInFlight: number
  /**
   * Cases 1 and 7: when a pool's warm-up rate says the full count would take
   * longer than this, it runs fewer tasks (never fewer than the minimums).
   * 0 runs the full counts.
   */
  readonly budgetMs: number
  readonly tinyMin: number
  readonly payloadMin: number
}

/** How many tasks fit the time budget, at `perMs` tasks per millisecond. */
export const withinBudget = (full: number, min: number, perMs: number, budgetMs: number, step: number): number => {
  if (budgetMs <= 0 || full / perMs <= budgetMs) return full
  return Math.min(full, Math.max(min, Math.floor((perMs * budgetMs) / step) * step))
}

const arg = (name: string): string | undefined =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)

const report = (key: string, value: unknown) => {
  process.stdout.write(`@@CASE ${JSON.stringify({ key, value })}\n`)
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

const sumSquares = (n: number) => ((n - 1) * n * (2 * n - 1)) / 6

const check = (ok: boolean, what: string) => {
  if (!ok) throw new Error(`wrong results: ${what}`)
}

const latencyFigures = (samples: ReadonlyArray<number>) => ({
  calls: samples.length,
  p50Us: percentile(samples, 50) * 1000,
  p99Us: percentile(samples, 99) * 1000,
  meanUs: (samples.reduce((a, b) => a + b, 0) / samples.length) * 1000
})

/** Case 7's inputs: 2 docs x 2 byte arrays, reused round robin. */
const payloads = (): { readonly list: Array<Payload>; readonly mbEach: number } => {
  const docs = [makeDoc(1), makeDoc(2)]
  const bytes = [makeBytes(1 << 20, 7), makeBytes(1 << 20, 11)]
  const list = [
    { doc: docs[0], bytes: bytes[0] },
    { doc: docs[1], bytes: bytes[1] },
    { doc: docs[0], bytes: bytes[1] },
    { doc: docs[1], bytes: bytes[0] }
  ]
  const mbEach = (JSON.stringify(docs[0]).length + bytes[0].length) / 1e6
  return { list, mbEach }
}

const timed = async <A>(f: () => Promise<A>): Promise<[A, number]> => {
  const t = performance.now()
  const a = await f()
  return [a, performance.now() - t]
}

const runCase = async (key: string, f: () => Promise<unknown>) => {
  try {
    report(key, await f())
  } catch (error) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
    report(key, { error: message })
  }
}

const runPool = async (name: string, config: Config) => {
  const adapter: Adapter = (await import(`./pools/${name}.ts`)).make()
  const cases = new Set(config.cases)
  const [, startMs] = await timed(() => adapter.start())
  report("start", { ms: startMs })

  // Make sure both workers exist and have run something, then let them settle.
  await adapter.squareMany([1, 2, 3, 4])
  if (cases.has(6)) {
    await runCase("6", async () => {
      await sleep(1000)
      const memory = treeMemory(process.pid)
      const reported = adapter.pids === undefined ? undefined : await adapter.pids()
      return { ...memory, reportedPids: reported }
    })
  }

  if (cases.has(4)) {
    await runCase("4", async () => {
      // Warm both workers' digest path first (JIT, OpenSSL init).
      await adapter.digestMany(range(4).map((seed) => ({ rounds: config.digestRounds, seed })))
      const inputs: Array<DigestInput> = range(config.cpuTasks).map((seed) => ({ rounds: config.digestRounds, seed }))
      // The serial baseline runs in a fresh bare child, timed inside it: a clean heap, like a
      // worker's (the parent's heap slows a GC-heavy loop by up to 2x). Half runs just before
      // and half just after the pool, so that both see the same machine: this host's speed drifts.
      const [serial, other] = await Promise.all([forkBare(), forkBare()])
      const warm = { digests: 3, rounds: config.digestRounds }
      await Promise.all([serial.ask(warm), other.ask(warm)])
      const half = inputs.length >> 1
      const before = await serial.ask<{ ms: number }>({ digests: half, rounds: config.digestRounds })
      const [results, ms] = await timed(() => adapter.digestMany(inputs))
      const rest = { digests: inputs.length - half, rounds: config.digestRounds, from: half }
      const after = await serial.ask<{ ms: number }>(rest)
      // The machine's capacity at this moment: the same half batch in 2 bare children at once.
      const [, bothMs] = await timed(() => Promise.all([serial.ask(rest), other.ask(rest)]))
      serial.child.disconnect()
      other.child.disconnect()
      check(results.length === inputs.length, "case 4 length")
      for (const i of [0, inputs.length >> 1, inputs.length - 1]) {
        check(results[i] === digest(config.digestRounds, i), `case 4 digest ${i}`)
      }
      const serialMs = before.ms + after.ms
      return {
        tasks: inputs.length,
        ms,
        serialMs,
        perTaskMs: serialMs / inputs.length,
        speedup: serialMs / ms,
        capacity: (2 * after.ms) / bothMs
      }
    })
  }

  // Warm up the hot paths (JIT, buffers) the same way for every pool.
  await adapter.squareMany(range(2000))
  const [, warmMs] = await timed(() => adapter.squareMany(range(2000)))
  // Case 3 measures steady state: JIT tiering of a runtime as large as Effect's takes thousands of calls.
  await adapter.latency(cases.has(3) ? config.latencyWarmup : 200)

  if (cases.has(3)) {
    await runCase("3", async () => latencyFigures(await adapter.latency(config.latencyCalls)))
  }
  if (cases.has(1)) {
    await runCase("1", async () => {
      const xs = range(withinBudget(config.tiny, config.tinyMin, 2000 / warmMs, config.budgetMs, 5000))
      const [results, ms] = await timed(() => adapter.squareMany(xs))
      check(results.length === xs.length && results.reduce((a, b) => a + b, 0) === sumSquares(xs.length), "case 1")
      return { tasks: xs.length, ms, perSecond: (xs.length / ms) * 1000 }
    })
  }
  if (cases.has(2)) {
    await runCase("2", async () => {
      const xs = range(config.mapItems)
      const [results, ms] = await timed(() => adapter.map(xs))
      check(results.length === xs.length && results[xs.length - 1] === (xs.length - 1) ** 2, "case 2 length/last")
      check(results[12345 % xs.length] === (12345 % xs.length) ** 2, "case 2 order")
      return { items: xs.length, ms, perSecond: (xs.length / ms) * 1000, note: adapter.mapNote }
    })
  }
  if (cases.has(7)) {
    await runCase("7", async () => {
      const { list, mbEach } = payloads()
      const expected = list.map((p) => checksum(p.doc, p.bytes))
      const warmTasks = config.payloadInFlight * 2
      const [, warm] = await timed(() => adapter.checksumMany(list, warmTasks, config.payloadInFlight))
      const count = withinBudget(config.payloadTasks, config.payloadMin, warmTasks / warm, config.budgetMs, 50)
      const [results, ms] = await timed(() => adapter.checksumMany(list, count, config.payloadInFlight))
      check(results.length === count, "case 7 length")
      results.forEach((r, i) => check(r === expected[i % list.length], `case 7 checksum ${i}`))
      return {
        tasks: count,
        ms,
        perSecond: (count / ms) * 1000,
        mbPerSecond: (count * mbEach) / (ms / 1000),
        mbEach,
        note: adapter.payloadNote
      }
    })
  }
  await adapter.close()
}

// ---------------------------------------------------------------------------
// The reference figures, with bare forked children
// ---------------------------------------------------------------------------

const bareChild = new URL("./peers/bare-child.ts", import.meta.url).pathname

const forkBare = async () => {
  const child = fork(bareChild, [], { execArgv: [] })
  const ask = <A>(message: unknown) =>
    new Promise<A>((resolve) => {
      child.once("message", (reply) => resolve(reply as A))
      child.send(message as any)
    })
  await ask<number>(1)
  return { child, ask }
}

const runBare = async (config: Config) => {
  const cases = new Set(config.cases)
  const a = await forkBare()
  const b = await forkBare()
  await a.ask<number>(2)
  await b.ask<number>(2)
  if (cases.has(6)) {
    await runCase("6", async () => {
      await sleep(1000)
      return treeMemory(process.pid)
    })
  }
  if (cases.has(3)) {
    await runCase("3", async () => {
      const ping = async (n: number) => {
        const out = new Array<number>(n)
        for (let i = 0; i < n; i++) {
          const t = performance.now()
          const r = await a.ask<number>(i)
          out[i] = performance.now() - t
          check(r === i * i, "ping")
        }
        return out
      }
      await ping(config.latencyWarmup)
      return latencyFigures(await ping(config.latencyCalls))
    })
  }
  if (cases.has(4)) {
    await runCase("4", async () => {
      // Warm both children, then: one child alone, and both at once.
      const job = { digests: 5, rounds: config.digestRounds }
      await Promise.all([a.ask(job), b.ask(job)])
      const batch = { digests: config.capacityDigests, rounds: config.digestRounds }
      const [, oneMs] = await timed(() => a.ask(batch))
      const [, twoMs] = await timed(() => Promise.all([a.ask(batch), b.ask(batch)]))
      return {
        capacity: (2 * oneMs) / twoMs,
        oneChildMs: oneMs,
        twoChildrenMs: twoMs
      }
    })
  }
  a.child.disconnect()
  b.child.disconnect()
}

const main = async () => {
  const pool = arg("pool")
  const config: Config = JSON.parse(arg("config") ?? "{}")
  if (pool === undefined) throw new Error("usage: node bench/runner.ts --pool=<name> --config=<json>")
  if (pool === "bare") await runBare(config)
  else await runPool(pool, config)
  process.stdout.write("@@DONE\n")
  // Wait for the workers to be gone, so that this process has reaped them and
  // the orchestrator can count their CPU time as ours. Some peers leave handles
  // behind after close; the figures are in, so exit regardless.
  for (let i = 0; i < 60 && descendants(process.pid).length > 0; i++) await sleep(50)
  process.exit(0)
}

if (import.meta.main) {
  main().catch((error) => {
    process.stderr.write(`runner failed: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  })
}
