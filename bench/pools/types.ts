/**
 * What the benchmark runner needs from each pool. Every adapter runs the same
 * functions from bench/work.ts in 2 worker processes (or threads, for piscina).
 */
import type { Payload } from "../work.ts"

export interface DigestInput {
  readonly rounds: number
  readonly seed: number
}

export interface Adapter {
  /** Builds the pool with 2 workers. */
  readonly start: () => Promise<void>
  /** The pids of the workers, when the pool exposes them. */
  readonly pids?: () => Promise<ReadonlyArray<number>>
  /** Cases 1 and 6: every input submitted at once, one task per input. */
  readonly squareMany: (xs: ReadonlyArray<number>) => Promise<ReadonlyArray<number>>
  /** Case 2: a map over many tiny items. */
  readonly map: (xs: ReadonlyArray<number>) => Promise<ReadonlyArray<number>>
  /** How `map` is done, for the report. */
  readonly mapNote: string
  /** Case 3: `n` sequential calls, returns each round trip in milliseconds. */
  readonly latency: (n: number) => Promise<Array<number>>
  /** Case 4: every input submitted at once. */
  readonly digestMany: (inputs: ReadonlyArray<DigestInput>) => Promise<ReadonlyArray<string>>
  /** Case 7: `count` tasks, payload `i` is `payloads[i % payloads.length]`, at most `inFlight` at once. */
  readonly checksumMany: (
    payloads: ReadonlyArray<Payload>,
    count: number,
    inFlight: number
  ) => Promise<ReadonlyArray<number>>
  /** How case 7's bytes travel, for the report. */
  readonly payloadNote: string
  readonly close: () => Promise<void>
}

/** Sequential round trips of a promise-returning call. */
export const latencyOf = async (n: number, call: (i: number) => Promise<number>): Promise<Array<number>> => {
  const out = new Array<number>(n)
  for (let i = 0; i < n; i++) {
    const t = performance.now()
    const r = await call(i)
    out[i] = performance.now() - t
    if (r !== i * i) throw new Error(`latency: wrong answer ${r} for ${i}`)
  }
  return out
}

/** The map of peers without one: chunks of `size` items, one task per chunk, all submitted at once. */
export const chunkedMap = async (
  xs: ReadonlyArray<number>,
  size: number,
  run: (chunk: Array<number>) => Promise<ReadonlyArray<number>>
): Promise<Array<number>> => {
  const jobs: Array<Promise<ReadonlyArray<number>>> = []
  for (let i = 0; i < xs.length; i += size) jobs.push(run(xs.slice(i, i + size)))
  const parts = await Promise.all(jobs)
  return parts.flat()
}

/** Runs `count` calls with at most `inFlight` outstanding, results in order. */
export const bounded = async <A>(
  count: number,
  inFlight: number,
  call: (i: number) => Promise<A>
): Promise<Array<A>> => {
  const out = new Array<A>(count)
  let next = 0
  const lane = async () => {
    while (next < count) {
      const i = next++
      out[i] = await call(i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(inFlight, count) }, lane))
  return out
}

export const MAP_CHUNK = 1000
