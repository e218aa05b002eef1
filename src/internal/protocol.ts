/**
 * The wire between the parent and one worker: a dedicated pipe (fd 3 in the
 * child) carrying length-prefixed JSON frames.
 *
 * A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON: an
 * array of the messages sent during one tick, so that one read and one
 * `JSON.parse` serve many tasks. Each message is itself a JSON array whose
 * first element is its kind. Arrays keep frames small and parsing cheap.
 *
 * ```
 * parent -> worker
 *   [Run,       id, tag, payload, trace]      one task
 *   [RunBatch,  id, tag, [payload, ...], trace, every]
 *                                             many payloads of one task, one reply; the results of
 *                                             every `every` items go ahead as a BatchPart
 *   [Interrupt, id]                           stop task id (queued or running)
 *   [Shutdown]                                finish and exit
 *   [Ping, seq]                               answer at once: the event loop is alive
 *   [Release, offset]                         the parent has read what the worker put at offset
 *                                             in its shared file: the region is free
 *   [RunStream, id, tag, payload, trace, window] a streaming task: it may send `window` items ahead
 *   [Ack, id, n]                              the consumer took n more items of stream id
 * worker -> parent
 *   [Ready, pid, [tag, ...]]                  the module is loaded, services are built
 *   [Exit,  id, kind, value]                  task id ended (kind: ExitKind)
 *   [BatchExit, id, [[kind, value], ...]]     every item of batch id ended
 *   [BatchValues, id, [value, ...]]           every item of batch id succeeded: the values alone
 *   [BatchPart, id, 0, [value, ...], next]    the next items of batch id succeeded, written before
 *   [BatchPart, id, 1, [[kind, value], ...], next] the item after them starts; the next part holds
 *                                             `next` items at most; BatchExit or BatchValues then
 *                                             holds only the items after the last part
 *   [Pong, seq, rss]                          the answer to Ping, with the resident set size
 *   [Recycle, reason]                         past its memory ceiling: replace me
 *   [StartFailed, summary]                    instead of Ready: why the worker cannot start, the user's error first
 *   [Items, id, [value, ...]]                 the next items of stream id; its Exit follows the last
 * ```
 *
 * A message of 64 KiB or more may instead be written to the sender's shared
 * file, with only a reference (a shared frame) on the pipe: see `Shared`.
 *
 * `trace` is `0` or `[traceId, spanId, sampled]`, the caller's span, so that
 * worker spans can join the caller's trace. Kinds not listed are reserved.
 *
 * @internal
 */

/** @internal */
export const ToWorker = {
  Run: 0,
  Interrupt: 1,
  Shutdown: 2,
  RunBatch: 3,
  Ping: 4,
  Release: 5,
  RunStream: 6,
  Ack: 7
} as const

/** @internal */
export const FromWorker = {
  Ready: 0,
  Exit: 1,
  BatchExit: 2,
  Pong: 3,
  Recycle: 4,
  BatchValues: 5,
  StartFailed: 6,
  Items: 7,
  BatchPart: 8
} as const

/** @internal */
export const ExitKind = {
  /** value: the encoded success */
  Success: 0,
  /** value: the encoded typed failure */
  Failure: 1,
  /** value: the encoded defect */
  Defect: 2,
  /** the task was interrupted at the parent's request; no value */
  Interrupted: 3,
  /** value: the issue; the worker could not decode the payload */
  PayloadInvalid: 4,
  /** value: the issue; the worker could not encode the result */
  ResultInvalid: 5,
  /** the module serves no handler for the tag; no value */
  NotServed: 6
} as const

/** @internal */
export type ExitKind = typeof ExitKind[keyof typeof ExitKind]

/** Whether a value is a known `ExitKind`. @internal */
export const isExitKind = (u: unknown): u is ExitKind =>
  typeof u === "number" && Number.isInteger(u) && u >= ExitKind.Success && u <= ExitKind.NotServed
