/**
 * Errors whose stack would show only the pool's own frames.
 *
 * @internal
 */

/**
 * Builds an error without stack frames, so that it prints as its name and
 * message alone: for errors made in the pool's callbacks (a worker that could
 * not start) or its checks (an option that makes no sense), where every frame
 * would be the pool's and none the caller's.
 *
 * @internal
 */
export const frameless = <E>(make: () => E): E => {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return make()
  } finally {
    Error.stackTraceLimit = limit
  }
}
