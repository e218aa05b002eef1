/**
 * Least-loaded routing, on plain slots: which worker gets the next entry.
 */
import { describe, expect, it } from "@effect/vitest"
import { hasRoom, leastLoaded, type Routable } from "../src/internal/processes/routing.ts"

const slot = (name: string, inflight: number, fields: Partial<Omit<Routable, "inflight">> = {}) => ({
  name,
  open: true,
  worker: { state: "ready" },
  inflight: { length: inflight },
  streams: 0,
  tasksDone: 0,
  ...fields
})

const options = { workerConcurrency: 1, maxTasksPerWorker: 0 }
const pick = (slots: ReadonlyArray<ReturnType<typeof slot>>, window = 4) => leastLoaded(slots, window, options)?.name

describe("routing", () => {
  it("picks the worker with the fewest entries in flight, the first on a tie", () => {
    expect(pick([slot("a", 2), slot("b", 1), slot("c", 3)])).toBe("b")
    expect(pick([slot("a", 1), slot("b", 0), slot("c", 0)])).toBe("b")
  })

  it("passes over a worker whose window is full", () => {
    expect(pick([slot("a", 4), slot("b", 3)])).toBe("b")
    expect(pick([slot("a", 4), slot("b", 4)])).toBeUndefined()
    expect(pick([])).toBeUndefined()
  })

  it("passes over a worker that is retired or not ready", () => {
    expect(pick([slot("a", 0, { open: false }), slot("b", 2)])).toBe("b")
    expect(pick([slot("a", 0, { worker: { state: "stopping" } }), slot("b", 2)])).toBe("b")
  })

  it("sends nothing ahead to a worker that runs a stream", () => {
    const streaming = slot("a", 1, { streams: 1 })
    expect(hasRoom(streaming, 4, options)).toBe(false)
    expect(hasRoom(streaming, 4, { ...options, workerConcurrency: 2 })).toBe(true)
    expect(pick([streaming, slot("b", 3)])).toBe("b")
  })

  it("keeps a worker's recycling budget: sent and done count against maxTasksPerWorker", () => {
    const budget = { workerConcurrency: 1, maxTasksPerWorker: 5 }
    expect(hasRoom(slot("a", 1, { tasksDone: 3 }), 4, budget)).toBe(true)
    expect(hasRoom(slot("a", 1, { tasksDone: 4 }), 4, budget)).toBe(false)
    expect(leastLoaded([slot("a", 0, { tasksDone: 5 }), slot("b", 2)], 4, budget)?.name).toBe("b")
  })
})
