/**
 * The caller's end of a streaming task's run. Items arrive pushed by the
 * worker, at most `window` ahead of what the consumer has taken, and are
 * kept as they come; each pull takes every item that has arrived and
 * acknowledges the ones taken at the pull before, which lets the worker
 * produce as many more. Items stay encoded: the service decodes them. The
 * worker's side is worker/stream.ts.
 *
 * @internal
 */
import type * as Arr from "effect/Array"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Pull from "effect/Pull"
import type { Dispatcher } from "./dispatcher.ts"
import type { Entry } from "./entry.ts"

/**
 * A stream's window as a whole number of items: at least 1, and `Infinity`
 * as the most the wire can say.
 *
 * @internal
 */
export const windowOf = (window: number | undefined, fallback: number): number => {
  const value = window ?? fallback
  if (value === Infinity) return 2 ** 31 - 1
  return Number.isFinite(value) ? Math.max(1, Math.floor(value)) : Math.max(1, Math.floor(fallback) || 128)
}

/**
 * What one attempt at a streaming task has received: the items not yet
 * pulled, and the end once it came. It is the entry's `resume` (`end`) and
 * `onItems` (`items`); `pull` gives the consumer what arrived, or waits for
 * it.
 *
 * @internal
 */
export class StreamReceiver<A, E> {
  private readonly dispatcher: Pick<Dispatcher, "ack">
  private entry: Entry | undefined = undefined
  private buffer: Array<unknown> = []
  /** Items handed to the consumer and not yet acknowledged: the consumer is done with them at its next pull. */
  private taken = 0
  /** How the stream ended, once it has. */
  private exit: Exit.Exit<unknown, unknown> | undefined = undefined
  private wake: (() => void) | undefined = undefined

  constructor(dispatcher: Pick<Dispatcher, "ack">) {
    this.dispatcher = dispatcher
  }

  /** Takes the stream's entry, once it is built: its items come here. */
  attach(entry: Entry): void {
    this.entry = entry
    entry.onItems = this.items
  }

  /** The stream ended with `exit`: the entry's `resume`. */
  readonly end = (exit: Exit.Exit<unknown, unknown>): void => {
    if (this.exit === undefined) this.exit = exit
    this.notify()
  }

  /** Items arrived, still encoded. */
  private readonly items = (values: Array<unknown>): void => {
    if (this.exit !== undefined) return
    if (this.buffer.length === 0) this.buffer = values
    else for (const value of values) this.buffer.push(value)
    this.notify()
  }

  private notify(): void {
    const waiting = this.wake
    this.wake = undefined
    waiting?.()
  }

  /** The consumer's pull: every item that has arrived, the end, or a wait for either. */
  readonly pull: Pull.Pull<Arr.NonEmptyReadonlyArray<A>, E> = Effect.suspend(() => {
    // Pulling again means the consumer is done with what it took: the worker may produce as many more.
    if (this.taken > 0 && this.exit === undefined) this.dispatcher.ack(this.entry!, this.taken)
    this.taken = 0
    if (this.buffer.length > 0) {
      const items = this.buffer
      this.buffer = []
      this.taken = items.length
      return Effect.succeed(items as unknown as Arr.NonEmptyReadonlyArray<A>)
    }
    const exit = this.exit
    if (exit !== undefined) return Exit.isSuccess(exit) ? Cause.done() : (exit as Exit.Exit<never, any>)
    return Effect.callback<void>((resume) => {
      this.wake = () => resume(Effect.void)
      return Effect.sync(() => {
        this.wake = undefined
      })
    }).pipe(Effect.flatMap(() => this.pull))
  })
}
