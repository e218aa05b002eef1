/**
 * The work every pool in the benchmark runs, as plain functions with no
 * dependencies, so that each peer's worker runs exactly the same code.
 */
import { createHash } from "node:crypto"

/** Case 1 and 3: the tiny task. */
export const square = (n: number): number => n * n

/** Case 2, for peers without a `map`: one message carries a chunk of items. */
export const squareAll = (xs: ReadonlyArray<number>): Array<number> => {
  const out = new Array<number>(xs.length)
  for (let i = 0; i < xs.length; i++) out[i] = xs[i] * xs[i]
  return out
}

/** Case 4: iterated SHA-256, pure CPU, deterministic. Returns the first 8 hex digits. */
export const digest = (rounds: number, seed: number): string => {
  let d = createHash("sha256").update(`seed:${seed}`).digest()
  for (let i = 1; i < rounds; i++) d = createHash("sha256").update(d).digest()
  return d.toString("hex").slice(0, 8)
}

/** One record of the case 7 object: about 100 bytes of JSON. */
export interface Item {
  readonly id: number
  readonly name: string
  readonly value: number
  readonly tags: ReadonlyArray<string>
}

/** The case 7 object: about 100 KB of JSON. */
export interface Doc {
  readonly id: number
  readonly items: ReadonlyArray<Item>
}

/** Case 7: a ~100 KB object and a 1 MiB byte array. */
export interface Payload {
  readonly doc: Doc
  readonly bytes: Uint8Array
}

export const makeDoc = (id: number): Doc => ({
  id,
  items: Array.from({ length: 1000 }, (_, i) => ({
    id: i,
    name: `item-${String(i).padStart(6, "0")}-of-doc-${id}`,
    value: i * 1.5 + id,
    tags: ["alpha", "beta", i % 2 === 0 ? "even" : "odd"]
  }))
})

export const makeBytes = (length: number, seed: number): Uint8Array => {
  const bytes = new Uint8Array(length)
  let x = seed | 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    bytes[i] = x & 0xff
  }
  return bytes
}

/**
 * Case 7's answer: a small checksum that reads every 64th byte and the doc's
 * size, so that a pool that lost or mangled the data gives a different number.
 */
export const checksum = (doc: Doc, bytes: Uint8Array): number => {
  let sum = bytes.length + doc.items.length * 7 + doc.id
  for (let i = 0; i < bytes.length; i += 64) sum = (sum * 31 + bytes[i]) >>> 0
  const last = doc.items[doc.items.length - 1]
  return (sum + (last === undefined ? 0 : last.value)) >>> 0
}

/** Base64 helpers, for peers whose channel is JSON only. */
export const toBase64 = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64")
export const fromBase64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, "base64"))
