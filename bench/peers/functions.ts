/**
 * The worker module of piscina and tinypool: one exported function per task,
 * each taking a single argument.
 */
import { checksum as check, digest as hash, type Doc, fromBase64, squareAll as all } from "../work.ts"

export const square = (n: number): number => n * n
export const squareAll = (xs: Array<number>): Array<number> => all(xs)
export const digest = ({ rounds, seed }: { rounds: number; seed: number }): string => hash(rounds, seed)
export const checksum = ({ bytes, doc }: { doc: Doc; bytes: Uint8Array }): number => check(doc, bytes)
export const checksumBase64 = ({ bytes, doc }: { doc: Doc; bytes: string }): number => check(doc, fromBase64(bytes))
