import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: { conditions: ["development"] },
  test: {
    include: ["test/**/*.test.ts"],
    // The JSON report gives .ci/run the run's own counts.
    reporters: ["default", ["json", { outputFile: "test-results/results.json" }]],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Every test spawns real processes; the machine has 2 cores.
    fileParallelism: false,
    // The soak measures the live heap after a forced collection.
    execArgv: ["--expose-gc"]
  }
})
