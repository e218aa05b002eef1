/**
 * Compiled JSON codecs for a task's Schemas, built once per task and cached.
 *
 * Every function returns either the converted value or an `Invalid` holding
 * the Schema's description of the issue. None of them throws.
 */
import * as Formatter from "effect/Formatter"
import * as Result from "effect/Result"
import * as Schema from "effect/Schema"
import * as SchemaJITCompiler from "effect/schema/SchemaJITCompiler"
import * as SchemaAST from "effect/SchemaAST"
import type * as Task from "../../Task.ts"

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

/**
 * A guard for values whose encoded form is the value itself, or `undefined`
 * when the Schema may change or check a value beyond its shape. It covers
 * plain data: strings, finite numbers, booleans, null, string, number and
 * boolean literals, and arrays, tuples and structs of those, with no checks,
 * transformations or optional keys. A value it accepts needs no codec call:
 * both the Schema's JSON codec and the Schema itself would return it as is.
 * A value it rejects goes through the codec, which transforms it or says why
 * it is invalid.
 *
 * For a binary task (`json` false) it covers `Schema.Uint8Array` too, whose
 * encoded form there is the array itself. Passed as it is, a payload keeps
 * its own arrays: the codec would build new ones with `new Array(n)`, which
 * V8 serializes as sparse arrays, index by index. V8 wrote case 7's payload
 * 11% larger that way, and took about 20% longer to serialize it and 20 to
 * 40% longer to deserialize it (`node bench/wire.ts`, before and after).
 */
const plainGuard = (ast: SchemaAST.AST, json: boolean): ((input: unknown) => boolean) | undefined => {
  if (ast.checks !== undefined || ast.encoding !== undefined || ast.context?.isOptional === true) return undefined
  switch (ast._tag) {
    case "String":
      return (input) => typeof input === "string"
    case "Number":
      return (input) => typeof input === "number" && Number.isFinite(input)
    case "Boolean":
      return (input) => typeof input === "boolean"
    case "Null":
      return (input) => input === null
    case "Literal": {
      const literal = ast.literal
      if (typeof literal === "bigint" || (typeof literal === "number" && !Number.isFinite(literal))) return undefined
      return (input) => input === literal
    }
    case "Union": {
      const literals = new Set<unknown>()
      for (const member of ast.types) {
        const guard = plainGuard(member, json)
        if (guard === undefined || member._tag !== "Literal") return undefined
        literals.add(member.literal)
      }
      return (input) => literals.has(input)
    }
    case "Arrays": {
      if (ast.encodingChecks !== undefined || ast.rest.length > 1) return undefined
      const elements: Array<(input: unknown) => boolean> = []
      for (const element of ast.elements) {
        const guard = plainGuard(element, json)
        if (guard === undefined) return undefined
        elements.push(guard)
      }
      const length = elements.length
      if (ast.rest.length === 0) {
        return (input) => {
          if (!Array.isArray(input) || input.length !== length) return false
          for (let i = 0; i < length; i++) if (!elements[i](input[i])) return false
          return true
        }
      }
      const rest = plainGuard(ast.rest[0], json)
      if (rest === undefined || length > 0) return undefined
      return (input) => {
        if (!Array.isArray(input)) return false
        for (let i = 0; i < input.length; i++) if (!rest(input[i])) return false
        return true
      }
    }
    case "Objects": {
      if (ast.encodingChecks !== undefined || ast.indexSignatures.length > 0) return undefined
      const fields: Record<string, (input: unknown) => boolean> = Object.create(null)
      const count = ast.propertySignatures.length
      for (const property of ast.propertySignatures) {
        const guard = typeof property.name === "string" ? plainGuard(property.type, json) : undefined
        if (guard === undefined) return undefined
        fields[property.name as string] = guard
      }
      // Exactly the declared keys, own and enumerable, on a plain object: what the codec would build.
      return (input) => {
        if (typeof input !== "object" || input === null || Array.isArray(input)) return false
        const proto = Object.getPrototypeOf(input)
        if (proto !== Object.prototype && proto !== null) return false
        // Counted by `for...in`, which allocates nothing. It also visits inherited enumerable keys: the prototype
        // is Object.prototype or null, which have none unless it was tampered with, and then the codec decides.
        let keys = 0
        for (const key in input) {
          const guard = fields[key]
          if (guard === undefined || !guard((input as Record<string, unknown>)[key])) return false
          keys++
        }
        return keys === count
      }
    }
    case "Declaration":
      return !json && ast.annotations?.representation !== undefined &&
          (ast.annotations.representation as { readonly id?: unknown }).id === uint8ArrayId
        ? (input) => input instanceof Uint8Array
        : undefined
    default:
      return undefined
  }
}

/** How `Schema.Uint8Array` names itself in its AST's annotations. */
const uint8ArrayId = "effect/schema/Uint8Array"

const reportInput: SchemaAST.ParseOptions = { reportInput: true }

/** The longest line an issue keeps: the value it got is shown, cut to a readable length. */
const maxIssueLine = 240

/** Cuts each line of an issue to {@link maxIssueLine} characters, and the whole to 40 lines. */
const shorten = (issue: string): string => {
  const lines = issue.split("\n")
  const kept = lines.slice(0, 40).map((line) =>
    line.length > maxIssueLine
      ? `${line.slice(0, maxIssueLine)}… (${line.length - maxIssueLine} more characters)`
      : line
  )
  if (lines.length > 40) kept.push(`… (${lines.length - 40} more lines)`)
  return kept.join("\n")
}

const compile = (
  parse: (
    schema: Schema.Codec<unknown, unknown>
  ) => (input: unknown, options?: SchemaAST.ParseOptions) => Result.Result<unknown, Schema.SchemaError>,
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
  const convert: Convert = (input) => {
    try {
      // The input is reported only on failure: it costs nothing while values fit.
      const result = run(input, reportInput)
      return Result.isSuccess(result) ? result.success : new Invalid(shorten(result.failure.message))
    } catch (cause) {
      return new Invalid(shorten(cause instanceof Error ? cause.message : String(cause)))
    }
  }
  const plain = plainGuard(schema.ast, json)
  return plain === undefined ? convert : (input) => plain(input) ? input : convert(input)
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

/** Reads a property that may be a throwing getter; `undefined` when it cannot be read as a string. */
const readString = (read: () => unknown): string | undefined => {
  try {
    const value = read()
    return typeof value === "string" ? value : value === undefined ? undefined : String(value)
  } catch {
    return undefined
  }
}

/** Describes any value in one line, whatever it is: `String` throws on some, and symbols need care. */
const describe = (value: unknown): string => {
  try {
    return typeof value === "string" ? value : Formatter.format(value)
  } catch {
    return readString(() => Object.prototype.toString.call(value)) ?? "a value that cannot be described"
  }
}

/**
 * The stack of an error whose own formatting throws (V8 formats a stack on
 * first read, with the message): its frames, under a head made of what could
 * be read.
 */
const framesOnly = (error: Error, name: string, message: string): string | undefined => {
  const ErrorWithHooks = Error as { prepareStackTrace?: unknown }
  const previous = ErrorWithHooks.prepareStackTrace
  ErrorWithHooks.prepareStackTrace = (_: unknown, sites: ReadonlyArray<unknown>) =>
    sites.map((site) => `    at ${site}`).join("\n")
  try {
    const frames = readString(() => error.stack)
    return frames === undefined ? undefined : `${name}: ${message}\n${frames}`
  } finally {
    ErrorWithHooks.prepareStackTrace = previous
  }
}

/**
 * Anything thrown, as text for a person: an error's stack (or its name and
 * message), any other value as a string. Never throws.
 *
 * @internal
 */
export const formatThrown = (thrown: unknown): string => {
  try {
    return thrown instanceof Error ? (thrown.stack ?? `${thrown.name}: ${thrown.message}`) : String(thrown)
  } catch {
    return "a value that cannot be printed"
  }
}

/**
 * Encodes any thrown value as plain JSON data, and never throws: an `Error`
 * keeps its name, message, stack and own primitive fields (such as `code`),
 * each read on its own so that one throwing getter loses only itself; any
 * other value (`throw "text"`, `throw undefined`, a symbol) is described in
 * the message.
 *
 * @internal
 */
export const encodeDefect: Convert = (defect) => {
  const isError = defect instanceof Error ||
    (typeof defect === "object" && defect !== null && readString(() => (defect as Error).message) !== undefined)
  if (!isError) {
    const message = typeof defect === "string"
      ? defect
      : `${describe(defect)} (the worker threw ${defect === null ? "null" : `a ${typeof defect}`}, not an Error)`
    return { name: "Error", message }
  }
  const error = defect as Error
  const name = readString(() => error.name) ?? "Error"
  const message = readString(() => error.message) ?? "(the message of this error could not be read: its getter threw)"
  const stack = readString(() => error.stack) ?? framesOnly(error, name, message)
  const fields: Record<string, string | number | boolean | null> = {}
  let keys: Array<string> = []
  try {
    keys = Object.keys(error)
  } catch {
    // a proxy that refuses to list its keys: the fields are lost, the rest is kept
  }
  for (const key of keys) {
    if (key === "name" || key === "message" || key === "stack") continue
    try {
      const value = (error as unknown as Record<string, unknown>)[key]
      if (typeof value === "string" || typeof value === "boolean" || value === null) fields[key] = value
      else if (typeof value === "number" && Number.isFinite(value)) fields[key] = value
    } catch {
      // a throwing getter: that field is lost
    }
  }
  return { name, message, ...(stack !== undefined ? { stack } : {}), fields }
}

/**
 * Decodes a defect encoded by {@link encodeDefect}, always as an `Error`: it
 * has the remote name and message, its `stack` is the remote stack, and the
 * remote primitive fields are set on it. Anything else (a malformed or foreign
 * value) becomes an `Error` that describes it.
 *
 * @internal
 */
export const decodeDefect: Convert = (value) => {
  if (typeof value !== "object" || value === null || typeof (value as Error).message !== "string") {
    return new Error(`A defect in the worker, in a form that could not be read: ${describe(value)}`)
  }
  const encoded = value as { name?: unknown; message: string; stack?: unknown; fields?: unknown }
  const error = new Error(encoded.message)
  if (typeof encoded.name === "string") error.name = encoded.name
  if (typeof encoded.stack === "string") error.stack = encoded.stack
  else error.stack = `${error.name}: ${error.message}\n    (in the worker; no stack was sent)`
  if (typeof encoded.fields === "object" && encoded.fields !== null) {
    for (const [key, field] of Object.entries(encoded.fields)) {
      if (key in error) continue
      ;(error as unknown as Record<string, unknown>)[key] = field
    }
  }
  return error
}
