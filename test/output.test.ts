import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { fixture, isAlive, tempFile, waitUntil } from "./helpers.ts"

describe("output", () => {
  for (const mode of ["recycle", "close"] as const) {
    it.live(`what a worker printed before it was ${mode}d arrives in full, however late it is read`, () =>
      Effect.gen(function*() {
        const file = tempFile("pid")
        const lines = 4_000
        const parent = spawn(process.execPath, [fixture("print-parent.ts").pathname, file, `${lines}`, mode], {
          stdio: ["ignore", "pipe", "pipe"]
        })
        // Listened to at once, then paused: should the parent exit before its pipes are read, Node resumes them
        // itself and emits 'close' then, and data or a 'close' nobody heard would be lost.
        let out = ""
        let err = ""
        parent.stdout!.on("data", (chunk) => out += chunk).pause()
        parent.stderr!.on("data", (chunk) => err += chunk).pause()
        const closed = new Promise<number | null>((resolve) => parent.on("close", resolve))
        let pid = 0
        yield* Effect.gen(function*() {
          // Nothing is read until the task has answered, and its worker has exited or had time to.
          yield* waitUntil("the task to answer", () => fs.existsSync(file) && fs.readFileSync(file, "utf8") !== "")
          pid = Number(fs.readFileSync(file, "utf8"))
          yield* Effect.ignore(waitUntil("the worker to exit", () => !isAlive(pid), 1_000))
          parent.stdout!.resume()
          parent.stderr!.resume()
          const code = yield* Effect.promise(() => closed)
          expect(code).toBe(0)
          const count = (text: string, stream: string) =>
            text.split("\n").filter((line) => line.startsWith(`${stream} ${pid} `)).length
          expect({ stdout: count(out, "out"), stderr: count(err, "err") }).toEqual({ stdout: lines, stderr: lines })
          expect(isAlive(pid)).toBe(false)
        }).pipe(
          // Should this fail, leave no process behind for the next tests.
          Effect.ensuring(Effect.sync(() => {
            if (parent.exitCode === null) parent.kill("SIGKILL")
            if (pid > 0 && isAlive(pid)) process.kill(pid, "SIGKILL")
          }))
        )
      }))
  }
})
