/**
 * Case 5: program start to first result with tinypool, 2 child processes.
 */
import { Tinypool } from "tinypool"

const pool = new Tinypool({
  filename: new URL("../peers/functions.ts", import.meta.url).href,
  runtime: "child_process",
  minThreads: 2,
  maxThreads: 2
})
const result = await pool.run(7, { name: "square" })
process.stdout.write(`FIRST ${result}\n`)
await pool.destroy()
process.exit(0)
