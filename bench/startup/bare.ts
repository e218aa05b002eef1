/**
 * Case 5, the floor: spawn 2 empty Node children with an IPC channel (no
 * module files, no TypeScript), ask one for 7 * 7.
 */
import { type ChildProcess, spawn } from "node:child_process"

const child = (): ChildProcess =>
  spawn(process.execPath, ["-e", "process.on('message', (n) => process.send(n * n))"], {
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })

const children = [child(), child()]
children[0].once("message", (result) => {
  process.stdout.write(`FIRST ${result}\n`)
  for (const c of children) c.kill()
  process.exit(0)
})
children[0].send(7)
