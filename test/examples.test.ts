/**
 * The observability examples, run as a user runs them: the Prometheus
 * endpoint of examples/metrics.ts scraped over real HTTP, and the plain
 * progress lines of examples/hash.ts when its output is not a terminal.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { type ChildProcess, spawn } from "node:child_process"
import { isAlive, waitUntil } from "./helpers.ts"

/** Runs an example with the library resolved to src/, as `npm run example` does. */
const runExample = (file: string, args: ReadonlyArray<string>) => {
  const child = spawn(
    process.execPath,
    ["--conditions=@effect-process-pool/source", new URL(`../examples/${file}`, import.meta.url).pathname, ...args],
    { stdio: ["ignore", "pipe", "pipe"] }
  )
  const output = { stdout: "", stderr: "" }
  child.stdout.on("data", (chunk: Buffer) => (output.stdout += chunk.toString()))
  child.stderr.on("data", (chunk: Buffer) => (output.stderr += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
  return { child, output, exited }
}

/** Ends a child and waits for its exit. */
const stop = (child: ChildProcess, exited: Promise<unknown>) =>
  Effect.promise(() => {
    child.kill("SIGTERM")
    return exited
  })

interface Sample {
  readonly name: string
  readonly labels: Record<string, string>
  readonly value: number
}

/** Parses Prometheus' text exposition format: its samples, and the type declared for each family. */
const parseExposition = (text: string) => {
  const samples: Array<Sample> = []
  const types = new Map<string, string>()
  for (const line of text.split("\n")) {
    if (line === "") continue
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (type !== null) {
      types.set(type[1], type[2])
      continue
    }
    if (line.startsWith("#")) continue
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert(sample !== null, `not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (sample[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value
    }
    samples.push({ name: sample[1], labels, value: sample[3] === "+Inf" ? Infinity : Number(sample[3]) })
  }
  return { samples, types }
}

const find = (samples: ReadonlyArray<Sample>, name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))

describe("examples", () => {
  it.live(
    "examples/metrics.ts serves the pool's metrics and the workers' own to a Prometheus scrape",
    () =>
      Effect.gen(function*() {
        const { child, exited, output } = runExample("metrics.ts", ["0"])
        yield* waitUntil("the example's address and workers", () => /workers: .+\n/.test(output.stdout), 30_000)
        const port = /metrics at http:\/\/\S+:(\d+)\/metrics/.exec(output.stdout)![1]
        const pids = /workers: (.+)\n/.exec(output.stdout)![1].split(" ").map(Number)
        const scrape = Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()))
        let text = ""
        yield* waitUntil(
          "tasks counted",
          Effect.map(scrape, (body) => {
            text = body
            const { samples } = parseExposition(body)
            return find(samples, "process_pool_tasks_total", { outcome: "success" }).some((s) => s.value > 0)
          }),
          30_000
        )
        yield* stop(child, exited)

        const { samples, types } = parseExposition(text)
        for (const sample of samples) {
          const family = sample.name.replace(/_(bucket|sum|count)$/, "")
          assert(types.has(sample.name) || types.has(family), `no TYPE for ${sample.name}`)
        }
        expect(types.get("process_pool_tasks_total")).toBe("counter")
        expect(types.get("process_pool_task_wait_seconds")).toBe("histogram")
        expect(types.get("process_pool_task_run_seconds")).toBe("histogram")
        expect(types.get("process_pool_queue_size")).toBe("gauge")
        expect(types.get("process_pool_tasks_inflight")).toBe("gauge")
        expect(types.get("process_pool_workers")).toBe("gauge")
        expect(types.get("process_pool_worker_exits_total")).toBe("counter")
        expect(types.get("process_pool_utilization")).toBe("gauge")
        const pool = { pool: "example" }
        expect(find(samples, "process_pool_workers", pool).map((s) => s.value)).toEqual([2])
        const done = find(samples, "process_pool_tasks_total", { ...pool, task: "Digest", outcome: "success" })[0].value
        expect(done).toBeGreaterThan(0)
        // What the handlers counted in two workers, as one series.
        const digests = find(samples, "example_digests_total")
        expect(digests.length).toBe(1)
        expect(digests[0].value).toBeGreaterThanOrEqual(done)
        // A histogram: cumulative buckets up to +Inf, which holds the count.
        const buckets = find(samples, "process_pool_task_run_seconds_bucket", { ...pool, task: "Digest" })
        expect(buckets.at(-1)!.labels.le).toBe("+Inf")
        expect(buckets.at(-1)!.value).toBe(find(samples, "process_pool_task_run_seconds_count", pool)[0].value)
        for (let i = 1; i < buckets.length; i++) expect(buckets[i].value).toBeGreaterThanOrEqual(buckets[i - 1].value)
        const utilization = find(samples, "process_pool_utilization", pool)[0].value
        expect(utilization).toBeGreaterThanOrEqual(0)
        expect(utilization).toBeLessThanOrEqual(1)
        yield* waitUntil("the example's workers to be gone", () => !pids.some(isAlive))
      }),
    { timeout: 60_000 }
  )

  it.live(
    "examples/hash.ts prints plain progress lines when its output is not a terminal",
    () =>
      Effect.gen(function*() {
        const { exited, output } = runExample("hash.ts", ["12"])
        const code = yield* Effect.promise(() => exited)
        expect(code, output.stderr).toBe(0)
        const lines = output.stdout.split("\n").filter((line) => line.startsWith("progress: "))
        expect(lines.length).toBeGreaterThanOrEqual(2)
        expect(lines.at(-1)).toMatch(/^progress: 12\/12 100% {2}[\d.]+\/s {2}ETA 0\.0 s {2}\d+\/\d+ workers busy$/)
        expect(output.stdout).not.toContain("\r")
        expect(output.stdout).toContain("digests agree")
      }),
    { timeout: 60_000 }
  )
})
