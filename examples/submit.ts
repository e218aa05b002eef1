// examples/submit.ts
//
// A port of the classic ProcessPoolExecutor tutorial:
//
//   def task():
//       print("Executing our Task on Process {}".format(os.getpid()))
//       return os.getpid()
//
//   if __name__ == "__main__":
//       executor = ProcessPoolExecutor(max_workers=3)
//       task1 = executor.submit(task)
//       task2 = executor.submit(task)
//       print(task1.result(), task2.result())
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ProcessPool, Task, Worker } from "effect-process-pool"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"

// No payload; answers with the pid of the worker process that ran it.
export const WhoAmI = Task.make("WhoAmI", { payload: Schema.Void, success: Schema.Number })

export default Worker.handlers(
  WhoAmI.handler(() =>
    Effect.sync(() => {
      // Workers share the parent's stdout.
      console.log(`Executing our Task on Process ${process.pid}`)
      return process.pid
    })
  )
)

const main = Effect.gen(function*() {
  const pool = yield* ProcessPool.ProcessPool
  console.log(`Parent process ${process.pid}`)
  // Two submissions, running at the same time.
  const [pid1, pid2] = yield* Effect.all([pool.submit(WhoAmI, undefined), pool.submit(WhoAmI, undefined)], {
    concurrency: "unbounded"
  })
  console.log(`task1 ran in process ${pid1}, task2 ran in process ${pid2}`)
})

if (import.meta.main) {
  main.pipe(Effect.provide(ProcessPool.layer({ worker: import.meta.url, size: 3 })), NodeRuntime.runMain)
}
