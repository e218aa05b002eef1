/**
 * effect-process-pool on worker threads: the same adapter as ours.ts, with
 * `isolation: "thread"`.
 */
import { makeWith } from "./ours.ts"
import type { Adapter } from "./types.ts"

export const make = (): Adapter => makeWith("thread")
