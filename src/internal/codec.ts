/**
 * Compiled JSON codecs for a task's Schemas, built once per task and cached.
 *
 * Every function returns either the converted value or an `Invalid` holding
 * the Schema's description of the issue. None of them throws.
 */
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaJITCompiler from "effect/schema/SchemaJITCompiler"
import * as SchemaAST from "effect/SchemaAST"
import type * as Task from "../Task.ts"

/** @internal */
export class Invalid {
  readonly issue: string
  constructor(issue: string) {
    this.issue = issue
  }
}

/** @internal */
export type Convert = (input: unknown) => unknown

/** @internal */
export interface TaskCodec {
  readonly encodePayload: Convert
  readonly decodePayload: Convert
  readonly encodeSuccess: Convert
  readonly decodeSuccess: Convert
  readonly encodeFailure: Convert
  readonly decodeFailure: Convert
  /** Whole chunks in one call each, for batches: built on first use. */
  readonly encodePayloads: Convert
  readonly decodePayloads: Convert
  readonly encodeSuccesses: Convert
  readonly decodeSuccesses: Convert
}

/** A converter compiled on its first call, so that tasks never run in batches pay nothing for it. */
const lazy = (build: () => Convert): Convert => {
  let convert: Convert | undefined
  return (input) => (convert ??= build())(input)
}

const compile = (
  parse: (schema: Schema.Codec<unknown, unknown>) => (input: unknown) => Result.Result<unknown, Schema.SchemaError>,
  schema: Schema.Top,
  json: boolean
): Convert => {
  // JSON tasks use each Schema's JSON codec; binary tasks its own encoded form, which V8 carries as is.
  const codec = (json ? Schema.toCodecJson(schema as Schema.Codec<unknown, unknown>) : schema) as Schema.Codec<
    unknown,
    unknown
  >
  // Compiled once per task, on both sides: decoding and encoding run as generated code, not the interpreter.
  SchemaJITCompiler.enable(codec.ast)
  SchemaJITCompiler.enable(SchemaAST.flip(codec.ast))
  const run = parse(codec)
  return (input) => {
    try {
      const result = run(input)
      return Result.isSuccess(result) ? result.success : new Invalid(result.failure.message)
    } catch (cause) {
      return new Invalid(cause instanceof Error ? cause.message : String(cause))
    }
  }
}

const encoder = (schema: Schema.Top, json = true) => compile(Schema.encodeUnknownResult, schema, json)
const decoder = (schema: Schema.Top, json = true) => compile(Schema.decodeUnknownResult, schema, json)

const cache = new WeakMap<Task.Task.Any, TaskCodec>()

/** @internal */
export const codecFor = (task: Task.Task.Any): TaskCodec => {
  let codec = cache.get(task)
  if (codec === undefined) {
    const json = task.serialization !== "binary"
    codec = {
      encodePayload: encoder(task.payloadSchema, json),
      decodePayload: decoder(task.payloadSchema, json),
      encodeSuccess: encoder(task.successSchema, json),
      decodeSuccess: decoder(task.successSchema, json),
      encodeFailure: encoder(task.failureSchema, json),
      decodeFailure: decoder(task.failureSchema, json),
      encodePayloads: lazy(() => encoder(Schema.Array(task.payloadSchema), json)),
      decodePayloads: lazy(() => decoder(Schema.Array(task.payloadSchema), json)),
      encodeSuccesses: lazy(() => encoder(Schema.Array(task.successSchema), json)),
      decodeSuccesses: lazy(() => decoder(Schema.Array(task.successSchema), json))
    }
    cache.set(task, codec)
  }
  return codec
}

const defect = Schema.Defect({ includeStack: true })

/**
 * Encodes any thrown value as JSON: an `Error` keeps its name, message and
 * stack.
 *
 * @internal
 */
export const encodeDefect: Convert = encoder(defect)

/**
 * Decodes a defect encoded by {@link encodeDefect}: an error-shaped value
 * becomes an `Error` with the remote name, message and stack.
 *
 * @internal
 */
export const decodeDefect: Convert = decoder(defect)
