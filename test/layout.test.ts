/**
 * The rules of the source layout (src/internal/README.md), read from the
 * imports of src/ as Node would load them: type-only imports are erased and
 * do not count.
 * - No import circle.
 * - What a worker loads stays on the worker's side: worker/, wire/, and the
 *   public Worker.ts and Task.ts that its module imports anyway. Every module
 *   a worker loads is start-up time paid by every worker.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const src = path.resolve(import.meta.dirname, "../src")

const sources = (fs.readdirSync(src, { recursive: true }) as Array<string>)
  .filter((name) => name.endsWith(".ts"))
  .map((name) => path.join(src, name))

/** The modules of src/ that `file` loads: static imports and re-exports that are not type-only, and dynamic imports. */
const valueImports = (file: string): Array<string> => {
  // Without comments: doc comments hold examples with imports of their own.
  const text = fs.readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "")
  const found: Array<string> = []
  const statement = /^\s*(?:import|export)\s+(type\s+)?([^;"']*?)\s*from\s*["'](\.[^"']+)["']/gm
  for (const [, typeOnly, names, specifier] of text.matchAll(statement)) {
    if (typeOnly !== undefined) continue
    const braced = /^\{([^}]*)\}$/.exec(names.trim())
    if (braced !== null && braced[1].split(",").every((name) => name.trim() === "" || /^type\s/.test(name.trim()))) {
      continue
    }
    found.push(specifier)
  }
  for (const [, specifier] of text.matchAll(/import\(\s*["'](\.[^"']+\.ts)["']\s*\)/g)) found.push(specifier)
  // The worker's boot loads its main by a computed name.
  for (const [, specifier] of text.matchAll(/import\([^)]*\?\s*["'](\.[^"']+\.ts)["']/g)) found.push(specifier)
  return found.map((specifier) => path.resolve(path.dirname(file), specifier))
}

const graph = new Map(sources.map((file) => [file, valueImports(file)]))

describe("the source layout", () => {
  it("every import names a module that exists", () => {
    const missing = [...graph].flatMap(([file, deps]) =>
      deps.filter((dep) => !graph.has(dep)).map((dep) => `${path.relative(src, file)} -> ${path.relative(src, dep)}`)
    )
    expect(missing).toStrictEqual([])
  })

  it("has no import circle", () => {
    const state = new Map<string, "open" | "done">()
    const circles: Array<string> = []
    const visit = (file: string, trail: Array<string>): void => {
      state.set(file, "open")
      for (const dep of graph.get(file) ?? []) {
        if (state.get(dep) === "open") {
          circles.push([...trail.slice(trail.indexOf(dep)), dep].map((f) => path.relative(src, f)).join(" -> "))
        } else if (state.get(dep) === undefined) visit(dep, [...trail, dep])
      }
      state.set(file, "done")
    }
    for (const file of graph.keys()) if (state.get(file) === undefined) visit(file, [file])
    expect(circles).toStrictEqual([])
  })

  it("a worker loads only the worker's side, the wire, and the public Worker and Task modules", () => {
    const allowed = (file: string) => {
      const relative = path.relative(src, file)
      return relative.startsWith(`internal${path.sep}worker${path.sep}`) ||
        relative.startsWith(`internal${path.sep}wire${path.sep}`) || relative === "Worker.ts" || relative === "Task.ts"
    }
    const loaded = new Set<string>()
    const pending = [path.join(src, "internal/worker/boot.ts"), path.join(src, "internal/worker/main.ts")]
    while (pending.length > 0) {
      const file = pending.pop()!
      if (loaded.has(file)) continue
      loaded.add(file)
      pending.push(...(graph.get(file) ?? []))
    }
    expect(loaded.has(path.join(src, "internal/worker/server.ts"))).toBe(true)
    expect([...loaded].filter((file) => !allowed(file)).map((file) => path.relative(src, file))).toStrictEqual([])
  })
})
