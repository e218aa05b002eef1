/**
 * Case 5: program start to first result with poolifier's FixedClusterPool, 2 workers.
 */
import { FixedClusterPool } from "poolifier"

const pool = new FixedClusterPool<number, number>(
  2,
  new URL("../peers/poolifier-worker.ts", import.meta.url).pathname
)
const result = await pool.execute(7, "square")
process.stdout.write(`FIRST ${result}\n`)
await pool.destroy()
process.exit(0)
