/**
 * Case 5: program start to first result with workerpool, 2 child processes.
 */
import workerpool from "workerpool"

const pool = workerpool.pool(new URL("../peers/workerpool-worker.ts", import.meta.url).pathname, {
  workerType: "process",
  minWorkers: 2,
  maxWorkers: 2
})
const result = await pool.exec("square", [7])
process.stdout.write(`FIRST ${result}\n`)
await pool.terminate()
process.exit(0)
