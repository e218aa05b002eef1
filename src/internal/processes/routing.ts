/**
 * Which worker gets the next entry: the least loaded of those with room.
 * Pure functions of what each worker's slot holds, so that the rule can be
 * tested without processes; the dispatcher calls them on every send.
 *
 * @internal
 */

/** What routing reads of a worker's slot (see `Slot`). @internal */
export interface Routable {
  /** Whether it takes new work. */
  readonly open: boolean
  readonly worker: { readonly state: string }
  /** Entries sent to it and not yet answered. */
  readonly inflight: { readonly length: number }
  /** Streaming tasks among `inflight`. */
  readonly streams: number
  readonly tasksDone: number
}

/** The options routing applies (see `DispatcherOptions`). @internal */
export interface RoutingOptions {
  /** How many tasks one worker runs at once. */
  readonly workerConcurrency: number
  /** Recycle a worker after this many tasks; 0 for never. */
  readonly maxTasksPerWorker: number
}

/**
 * Whether a worker may take one more entry: open, ready, fewer than `window`
 * in flight, recycling budget not spent. Nothing is sent ahead to a worker
 * that runs a stream: a stream ends when its consumer says so, and the entry
 * would wait behind it.
 *
 * @internal
 */
export const hasRoom = (slot: Routable, window: number, options: RoutingOptions): boolean =>
  slot.open && slot.worker.state === "ready" &&
  slot.inflight.length < (slot.streams > 0 ? options.workerConcurrency : window) &&
  (options.maxTasksPerWorker === 0 || slot.tasksDone + slot.inflight.length < options.maxTasksPerWorker)

/**
 * The worker with room that holds the fewest entries in flight, the first of
 * `slots` on a tie; undefined when none has room. `window` is the most
 * entries one worker may hold: its concurrency plus those sent ahead.
 *
 * @internal
 */
export const leastLoaded = <S extends Routable>(
  slots: Iterable<S>,
  window: number,
  options: RoutingOptions
): S | undefined => {
  let best: S | undefined
  for (const slot of slots) {
    if (!hasRoom(slot, window, options)) continue
    if (best === undefined || slot.inflight.length < best.inflight.length) best = slot
  }
  return best
}
