/**
 * A bare forked child for the reference figures: echoes n * n for a number
 * (the ping-pong floor), and runs a batch of digests on request, timing them
 * itself (the serial baseline of case 4, and the machine's parallel capacity).
 */
import { digest } from "../work.ts"

interface Batch {
  readonly digests: number
  readonly rounds: number
  readonly from?: number
}

process.on("message", (message: number | Batch) => {
  if (typeof message === "number") {
    process.send!(message * message)
    return
  }
  const from = message.from ?? 0
  const started = performance.now()
  let last = ""
  for (let i = from; i < from + message.digests; i++) last = digest(message.rounds, i)
  process.send!({ last, ms: performance.now() - started })
})
process.on("disconnect", () => process.exit(0))
