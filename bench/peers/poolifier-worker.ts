/**
 * The worker file of poolifier's FixedClusterPool.
 */
import { ClusterWorker } from "poolifier"
import { checksum, digest, type Doc, square, squareAll } from "../work.ts"

export default new ClusterWorker<any, any>({
  square: (n: number) => square(n),
  squareAll: (xs: Array<number>) => squareAll(xs),
  digest: (input: { rounds: number; seed: number }) => digest(input.rounds, input.seed),
  checksum: (input: { doc: Doc; bytes: Uint8Array }) => checksum(input.doc, input.bytes)
})
