import { defineConfig } from "vitest/config"

// This repository's own condition: "effect-process-pool" resolves to src/ here,
// and to dist/ everywhere else (see "exports" in package.json).
const source = "@effect-process-pool/source"

export default defineConfig({
  resolve: { conditions: [source] },
  // The cluster tests load examples/cluster.ts, which imports the package by its name: src/ there too.
  ssr: { resolve: { conditions: [source] } },
  test: {
    include: ["test/**/*.test.ts", "examples/**/*.test.ts"],
    // The JSON report gives .ci/run the run's own counts.
    reporters: ["default", ["json", { outputFile: "test-results/results.json" }]],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Every test spawns real processes; the machine has 2 cores.
    fileParallelism: false,
    // The soak measures the live heap after a forced collection. The condition
    // also reaches Node's own resolution in the test processes and, through
    // their execArgv, in the workers they spawn.
    execArgv: ["--expose-gc", `--conditions=${source}`]
  }
})
