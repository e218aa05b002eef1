/**
 * The entries no worker has taken yet, in order: the FIFO queue with its
 * bound (`maxQueue`) and, behind it, the submitters that wait for room in it
 * (queuePolicy "wait"). The dispatcher asks it for the next entry; what an
 * entry becomes once taken is the dispatcher's.
 *
 * A removed entry (its caller was interrupted) is not searched for: it is
 * marked ended and passed over when its turn comes, so removal costs no scan.
 *
 * @internal
 */
import { type Entry, EntryState } from "./entry.ts"

/** What became of an entry offered to the queue. @internal */
export const Offered = {
  /** It is in the queue. */
  Queued: 0,
  /** The queue is full: it waits for room (queuePolicy "wait"). */
  Waiting: 1,
  /** The queue is full and the policy is "reject": it was not taken. */
  Refused: 2
} as const

/** What became of an entry offered to the queue: one of {@link Offered}. @internal */
export type Offered = (typeof Offered)[keyof typeof Offered]

/** The queue of one dispatcher, and the submitters that wait for room in it. @internal */
export class TaskQueue {
  /** The queue from `head` on; a slot is emptied when its entry is taken. */
  private entries: Array<Entry | undefined> = []
  private head = 0
  /** Live entries in `entries`: removed ones stay in the array until they are passed over. */
  private queued = 0
  /** The submitters waiting for room, from `waitingHead` on. */
  private waiters: Array<Entry> = []
  private waitingHead = 0
  /** Live entries in `waiters`: removed ones stay in the array until they are passed over. */
  private waitingCount = 0

  private readonly maxQueue: number
  private readonly policy: "wait" | "reject"

  constructor(maxQueue: number, policy: "wait" | "reject") {
    this.maxQueue = maxQueue
    this.policy = policy
  }

  /** Entries in the queue, ready for the next worker with room. */
  get size(): number {
    return this.queued
  }

  /** Submitters waiting for room in the queue. */
  get waiting(): number {
    return this.waitingCount
  }

  /** Takes a new entry: into the queue while it has room, else by the policy. */
  offer(entry: Entry): Offered {
    if (this.queued < this.maxQueue) {
      entry.state = EntryState.Queued
      this.queued++
      this.entries.push(entry)
      return Offered.Queued
    }
    if (this.policy === "reject") return Offered.Refused
    entry.state = EntryState.Waiting
    this.waitingCount++
    this.waiters.push(entry)
    return Offered.Waiting
  }

  /** The first entry of the queue, taken out of it: a waiting submitter gets its place. */
  take(): Entry | undefined {
    while (this.head < this.entries.length) {
      const entry = this.entries[this.head]
      this.entries[this.head++] = undefined
      if (entry !== undefined && entry.state === EntryState.Queued) {
        this.queued--
        this.admitWaiting()
        if (this.head > 1024 && this.head * 2 > this.entries.length) {
          this.entries = this.entries.slice(this.head)
          this.head = 0
        }
        return entry
      }
    }
    return undefined
  }

  /** Puts an entry back at the front of the queue, beyond its bound: its worker died before it started. */
  putBack(entry: Entry): void {
    entry.state = EntryState.Queued
    this.queued++
    if (this.head > 0) this.entries[--this.head] = entry
    else this.entries.unshift(entry)
  }

  /** Drops a queued or waiting entry, whose caller was interrupted: it ends here. */
  remove(entry: Entry): void {
    if (entry.state === EntryState.Queued) {
      this.queued--
      this.admitWaiting()
    } else {
      this.waitingCount--
    }
    entry.state = EntryState.Done
  }

  /**
   * Empties the queue: `end` is called on each waiting submitter, then on
   * each queued entry in order. `end` must end the entry.
   */
  clear(end: (entry: Entry) => void): void {
    for (let i = this.waitingHead; i < this.waiters.length; i++) {
      const entry = this.waiters[i]
      if (entry.state === EntryState.Waiting) end(entry)
    }
    this.waiters = []
    this.waitingHead = 0
    this.waitingCount = 0
    for (let entry = this.take(); entry !== undefined; entry = this.take()) end(entry)
  }

  /**
   * Tasks waiting for a worker, including those waiting for room in the
   * queue, with a map's items one by one. Counted when asked, for a gauge:
   * the queue keeps no such count as it moves.
   */
  items(): number {
    let items = 0
    for (let i = this.head; i < this.entries.length; i++) {
      const entry = this.entries[i]
      if (entry !== undefined && entry.state === EntryState.Queued) items += entry.batchSize || 1
    }
    for (let i = this.waitingHead; i < this.waiters.length; i++) {
      const entry = this.waiters[i]
      if (entry.state === EntryState.Waiting) items += entry.batchSize || 1
    }
    return items
  }

  /** Moves waiting submitters into the queue while it has room. */
  private admitWaiting(): void {
    while (this.waitingHead < this.waiters.length && this.queued < this.maxQueue) {
      const entry = this.waiters[this.waitingHead++]
      if (entry.state !== EntryState.Waiting) continue
      this.waitingCount--
      entry.state = EntryState.Queued
      this.queued++
      this.entries.push(entry)
    }
    if (this.waitingHead === this.waiters.length) {
      this.waiters = []
      this.waitingHead = 0
    }
  }
}
