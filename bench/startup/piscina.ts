/**
 * Case 5: program start to first result with piscina, 2 threads.
 */
import { Piscina } from "piscina"

const pool = new Piscina({
  filename: new URL("../peers/functions.ts", import.meta.url).href,
  minThreads: 2,
  maxThreads: 2
})
const result = await pool.run(7, { name: "square" })
process.stdout.write(`FIRST ${result}\n`)
await pool.destroy()
process.exit(0)
