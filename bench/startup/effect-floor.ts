/**
 * What loading `effect` costs a parent: the modules a program with a pool
 * imports, and nothing of the pool. With `--bare`, nothing at all. Prints
 * `LOADED <ms since start> <RSS MB>`; the bench takes the difference of the
 * two as the floor under a pool built on Effect (cases 5 and 6).
 */
if (!process.argv.includes("--bare")) {
  await import("effect/Effect")
  await import("effect/Layer")
  await import("effect/Schema")
  await import("effect/Stream")
}
process.stdout.write(`LOADED ${performance.now().toFixed(1)} ${(process.memoryUsage.rss() / 1e6).toFixed(1)}\n`)
