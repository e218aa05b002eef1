/**
 * The public API's types, as a user of the package sees them: `npm run check`
 * fails when one of them changes. Nothing here runs a pool: the programs are
 * built and never run, and `expectTypeOf` checks types only.
 */
import { describe, expectTypeOf, it } from "@effect/vitest"
import { type PoolError, ProcessPool, Task, Worker } from "effect-process-pool"
import type { Sharding } from "effect/cluster/Sharding"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { type Negative, Square } from "./fixtures/tasks.ts"

/** A task without a payload. */
const Tick = Task.make("Tick", { success: Schema.Number })

/** A streaming task: `submit` gives a `Stream` of its items. */
const Count = Task.make("Count", {
  payload: Schema.Number,
  success: Schema.Number,
  failure: Schema.String,
  stream: true
})

class InputError extends Schema.TaggedError<InputError>()("InputError", {}) {}
class Input extends Context.Service<Input, { readonly next: number }>()("test/Input") {}

class Greeter extends Context.Service<Greeter, { readonly greet: (name: string) => string }>()("test/Greeter") {}
class Config extends Context.Service<Config, { readonly greeting: string }>()("test/Config") {}
class Db extends Context.Service<Db, { readonly url: string }>()("test/Db") {}

const Greet = Task.make("Greet", { payload: Schema.String, success: Schema.String })
const Greetings = Task.make("Greetings", { payload: Schema.String, success: Schema.String, stream: true })

describe("types", () => {
  it("the tasks have the types of their Schemas", () => {
    expectTypeOf(Tick).toEqualTypeOf<Task.Task<"Tick", Schema.Void, Schema.Number, Schema.Never, false>>()
    expectTypeOf<Task.Task.Payload<typeof Tick>>().toEqualTypeOf<void>()
    expectTypeOf<Task.Task.Success<typeof Count>>().toEqualTypeOf<number>()
    expectTypeOf<Task.Task.Failure<typeof Count>>().toEqualTypeOf<string>()
    expectTypeOf<Task.Task.Failure<typeof Tick>>().toEqualTypeOf<never>()
    expectTypeOf(Count).toExtend<Task.Task.Streaming>()
    expectTypeOf(Count).not.toExtend<Task.Task.Unary>()
    expectTypeOf(Square).toExtend<Task.Task.Unary>()
  })

  it("SubmitArgs: a task without a payload is submitted without one; a task with one needs it", () => {
    expectTypeOf<ProcessPool.SubmitArgs<typeof Tick>>().toEqualTypeOf<
      [payload?: void, options?: ProcessPool.SubmitOptions]
    >()
    expectTypeOf<ProcessPool.SubmitArgs<typeof Square>>().toEqualTypeOf<
      [payload: number, options?: ProcessPool.SubmitOptions]
    >()
    const program = Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      expectTypeOf(pool.submit(Tick)).toEqualTypeOf<Effect.Effect<number, PoolError.PoolError>>()
      expectTypeOf(pool.submit(Tick, undefined, { timeout: "1 second" })).toEqualTypeOf<
        Effect.Effect<number, PoolError.PoolError>
      >()
      // @ts-expect-error: Square takes a number
      pool.submit(Square)
      // @ts-expect-error: Square takes a number
      pool.submit(Square, "3")
      // @ts-expect-error: Count takes a number
      pool.submit(Count)
    })
    expectTypeOf(program).toEqualTypeOf<Effect.Effect<void, never, ProcessPool.ProcessPool>>()

    expectTypeOf(ProcessPool.submit(Tick)).toEqualTypeOf<
      Effect.Effect<number, PoolError.PoolError, ProcessPool.ProcessPool>
    >()
    // @ts-expect-error: Square takes a number
    ProcessPool.submit(Square)
  })

  it("submit: a Stream for a streaming task, an Effect for a unary one", () => {
    const program = Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      expectTypeOf(pool.submit(Square, 3)).toEqualTypeOf<Effect.Effect<number, Negative | PoolError.PoolError>>()
      expectTypeOf(pool.submit(Count, 3)).toEqualTypeOf<Stream.Stream<number, string | PoolError.PoolError>>()
      expectTypeOf<ProcessPool.Submitted<typeof Count>>().toEqualTypeOf<
        Stream.Stream<number, string | PoolError.PoolError>
      >()
    })
    expectTypeOf(program).toEqualTypeOf<Effect.Effect<void, never, ProcessPool.ProcessPool>>()
  })

  it("map: no streaming task; fails with the task's failure or a PoolError", () => {
    const program = Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      expectTypeOf(pool.map(Square, [1, 2, 3])).toEqualTypeOf<
        Effect.Effect<Array<number>, Negative | PoolError.PoolError>
      >()
      expectTypeOf(pool.map(Tick, [undefined], { ordered: false })).toEqualTypeOf<
        Effect.Effect<Array<number>, PoolError.PoolError>
      >()
      // @ts-expect-error: a streaming task
      pool.map(Count, [1, 2, 3])
      // @ts-expect-error: Square takes numbers
      pool.map(Square, ["1"])
      // @ts-expect-error: a streaming task
      pool.mapExits(Count, [1, 2, 3])
      // @ts-expect-error: a streaming task
      pool.stream(Count, [1, 2, 3])
    })
    expectTypeOf(program).toEqualTypeOf<Effect.Effect<void, never, ProcessPool.ProcessPool>>()
    // @ts-expect-error: a streaming task
    ProcessPool.map(Count, [1, 2, 3])
  })

  it("mapExits: fails only with InvalidOption; every item is an Exit of the task's success and failures", () => {
    const program = Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      const exits = pool.mapExits(Square, [1, 2, 3])
      expectTypeOf(exits).toEqualTypeOf<
        Effect.Effect<Array<Exit.Exit<number, Negative | PoolError.PoolError>>, PoolError.InvalidOption>
      >()
      expectTypeOf<Effect.Error<typeof exits>>().toEqualTypeOf<PoolError.InvalidOption>()
    })
    expectTypeOf(program).toEqualTypeOf<Effect.Effect<void, never, ProcessPool.ProcessPool>>()
  })

  it("stream: adds what the input stream fails with and needs", () => {
    const program = Effect.gen(function*() {
      const pool = yield* ProcessPool.ProcessPool
      expectTypeOf(pool.stream(Square, [1, 2, 3])).toEqualTypeOf<
        Stream.Stream<number, Negative | PoolError.PoolError>
      >()
      const inputs = Stream.fromIterable([1, 2, 3]).pipe(
        Stream.mapEffect((n) => Input.use((input) => Effect.succeed(n + input.next))),
        Stream.concat(Stream.fail(new InputError()))
      )
      expectTypeOf(inputs).toEqualTypeOf<Stream.Stream<number, InputError, Input>>()
      expectTypeOf(pool.stream(Square, inputs)).toEqualTypeOf<
        Stream.Stream<number, Negative | PoolError.PoolError | InputError, Input>
      >()
    })
    expectTypeOf(program).toEqualTypeOf<Effect.Effect<void, never, ProcessPool.ProcessPool>>()
  })

  it("the accessors need the ProcessPool", () => {
    expectTypeOf(ProcessPool.submit(Square, 3)).toEqualTypeOf<
      Effect.Effect<number, Negative | PoolError.PoolError, ProcessPool.ProcessPool>
    >()
    expectTypeOf(ProcessPool.submit(Count, 3)).toEqualTypeOf<
      Stream.Stream<number, string | PoolError.PoolError, ProcessPool.ProcessPool>
    >()
    expectTypeOf(ProcessPool.map(Square, [1, 2, 3])).toEqualTypeOf<
      Effect.Effect<Array<number>, Negative | PoolError.PoolError, ProcessPool.ProcessPool>
    >()
    expectTypeOf(ProcessPool.mapExits(Square, [1, 2, 3])).toEqualTypeOf<
      Effect.Effect<
        Array<Exit.Exit<number, Negative | PoolError.PoolError>>,
        PoolError.InvalidOption,
        ProcessPool.ProcessPool
      >
    >()
    expectTypeOf(ProcessPool.stream(Square, [1, 2, 3])).toEqualTypeOf<
      Stream.Stream<number, Negative | PoolError.PoolError, ProcessPool.ProcessPool>
    >()
    expectTypeOf(ProcessPool.stream(Square, Stream.fail(new InputError()))).toEqualTypeOf<
      Stream.Stream<number, Negative | PoolError.PoolError | InputError, ProcessPool.ProcessPool>
    >()
    expectTypeOf(ProcessPool.stats).toEqualTypeOf<Effect.Effect<ProcessPool.Stats, never, ProcessPool.ProcessPool>>()
    expectTypeOf(ProcessPool.statsStream).returns.toEqualTypeOf<
      Stream.Stream<ProcessPool.Stats, never, ProcessPool.ProcessPool>
    >()
  })

  it("the layers and make: what building a pool fails with and needs", () => {
    expectTypeOf(ProcessPool.layer).returns.toEqualTypeOf<
      Layer.Layer<ProcessPool.ProcessPool, PoolError.WorkerStartError | PoolError.InvalidOption>
    >()
    expectTypeOf(ProcessPool.layerCluster).returns.toEqualTypeOf<
      Layer.Layer<ProcessPool.ProcessPool, PoolError.InvalidOption, Sharding>
    >()
    expectTypeOf(ProcessPool.layerRunner).returns.toEqualTypeOf<
      Layer.Layer<never, PoolError.WorkerStartError | PoolError.InvalidOption, Sharding>
    >()
    expectTypeOf(ProcessPool.make).returns.toEqualTypeOf<
      Effect.Effect<ProcessPool.Service, PoolError.WorkerStartError | PoolError.InvalidOption, Scope.Scope>
    >()
    const program = ProcessPool.submit(Square, 3).pipe(
      Effect.provide(Layer.succeed(ProcessPool.ProcessPool, {} as ProcessPool.Service))
    )
    expectTypeOf(program).toEqualTypeOf<Effect.Effect<number, Negative | PoolError.PoolError>>()
  })

  it("Worker.provide: the handlers need a service until a layer supplies it", () => {
    const greet = Greet.handler((name) => Greeter.use((greeter) => Effect.succeed(greeter.greet(name))))
    expectTypeOf(greet).toEqualTypeOf<Task.Handler<typeof Greet, Greeter>>()
    const greetings = Greetings.handler((name) =>
      Stream.fromEffect(Db.use((db) => Effect.succeed(`${name} from ${db.url}`)))
    )
    expectTypeOf(greetings).toEqualTypeOf<Task.Handler<typeof Greetings, Db>>()

    expectTypeOf(Worker.handlers(Tick.handler(() => Effect.succeed(1)))).toEqualTypeOf<Worker.Handlers<never>>()
    const handlers = Worker.handlers(greet, greetings)
    expectTypeOf(handlers).toEqualTypeOf<Worker.Handlers<Greeter | Db>>()

    const GreeterLive = Layer.succeed(Greeter, { greet: (name: string) => `hello ${name}` })
    const DbLive = Layer.succeed(Db, { url: "postgres://localhost" })
    expectTypeOf(handlers.pipe(Worker.provide(GreeterLive))).toEqualTypeOf<Worker.Handlers<Db>>()
    expectTypeOf(handlers.pipe(Worker.provide(GreeterLive), Worker.provide(DbLive))).toEqualTypeOf<
      Worker.Handlers<never>
    >()
    expectTypeOf(Worker.provide(handlers, Layer.merge(GreeterLive, DbLive))).toEqualTypeOf<Worker.Handlers<never>>()

    // A layer that needs a service of its own leaves that service to be provided.
    const GreeterFromConfig = Layer.effect(
      Greeter,
      Config.use((config) => Effect.succeed({ greet: (name: string) => `${config.greeting} ${name}` }))
    )
    expectTypeOf(GreeterFromConfig).toEqualTypeOf<Layer.Layer<Greeter, never, Config>>()
    expectTypeOf(Worker.handlers(greet).pipe(Worker.provide(GreeterFromConfig))).toEqualTypeOf<
      Worker.Handlers<Config>
    >()
    expectTypeOf(handlers.pipe(Worker.provide(GreeterFromConfig))).toEqualTypeOf<Worker.Handlers<Db | Config>>()

    // A layer that fails to build is a WorkerStartError in the parent: the handlers' type does not carry it.
    const Broken = Layer.effect(Greeter, Effect.fail(new InputError()))
    expectTypeOf(Worker.handlers(greet).pipe(Worker.provide(Broken))).toEqualTypeOf<Worker.Handlers<never>>()
  })
})
