/**
 * The worker script of workerpool (workerType "process").
 */
import workerpool from "workerpool"
import { checksum, digest, type Doc, fromBase64, square, squareAll } from "../work.ts"

workerpool.worker({
  square: (n: number) => square(n),
  squareAll: (xs: Array<number>) => squareAll(xs),
  digest: (input: { rounds: number; seed: number }) => digest(input.rounds, input.seed),
  checksum: (input: { doc: Doc; bytes: Uint8Array }) => checksum(input.doc, input.bytes),
  checksumBase64: (input: { doc: Doc; bytes: string }) => checksum(input.doc, fromBase64(input.bytes))
})
