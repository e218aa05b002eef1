// examples/metrics.ts
//
// A pool's metrics for Prometheus. While work runs, Effect's PrometheusMetrics
// serves at /metrics, over @effect/platform-node's HTTP server, both the pool's
// own process_pool_* series and what the handlers count in the workers
// (example_digests_total), merged as if one process had counted it. No code
// of ours reads a metric: the pool and the handlers use Effect's Metric, and
// the exporter reads the registry.
//
//   npm run example examples/metrics.ts [port]     (default 9464; 0 picks a free port)
//   curl -s localhost:9464/metrics | grep process_pool_
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { ProcessPool, Task, Worker } from "effect-process-pool"
import * as Effect from "effect/Effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as PrometheusMetrics from "effect/observability/PrometheusMetrics"
import * as Schema from "effect/Schema"
import { createHash } from "node:crypto"
import { createServer } from "node:http"

// Hashes a seed `rounds` times: a task of a fraction of a millisecond to a few.
export const Digest = Task.make("Digest", { payload: Schema.Int, success: Schema.String })

// Counted in each worker; the parent's registry holds the sum.
const digests = Metric.counter("example_digests_total", { description: "Digests the handlers computed" })

export default Worker.handlers(
  Digest.handler((rounds) =>
    Effect.andThen(
      Metric.update(digests, 1),
      Effect.sync(() => {
        let d = createHash("sha256").update(String(rounds)).digest()
        for (let i = 1; i < rounds; i++) d = createHash("sha256").update(d).digest()
        return d.toString("hex")
      })
    )
  )
)

// GET /metrics: the registry in Prometheus' text format.
const MetricsServer = HttpRouter.serve(PrometheusMetrics.layerHttp(), { disableLogger: true, disableListenLog: true })
  .pipe(Layer.provideMerge(NodeHttpServer.layer(createServer, { port: Number(process.argv[2] ?? 9464) })))

const main = Effect.gen(function*() {
  yield* HttpServer.addressFormattedWith((url) => Effect.sync(() => console.log(`metrics at ${url}/metrics`)))
  const pool = yield* ProcessPool.ProcessPool
  const { workers } = yield* pool.stats
  console.log(`workers: ${workers.map((w) => w.pid).join(" ")}`)
  // Work until interrupted (Ctrl-C): maps of tasks of mixed sizes, one at a time.
  yield* Effect.forever(pool.map(Digest, Array.from({ length: 100 }, (_, i) => 100 + 50 * (i % 20))))
})

if (import.meta.main) {
  main.pipe(
    Effect.provide(
      Layer.merge(MetricsServer, ProcessPool.layer({ worker: import.meta.url, size: 2, name: "example" }))
    ),
    NodeRuntime.runMain
  )
}
