/**
 * effect-process-pool: typed tasks in a scoped pool of real OS child processes.
 *
 * @since 0.1.0
 */

/**
 * The pool's own errors.
 *
 * @since 0.1.0
 */
export * as PoolError from "./PoolError.ts"

/**
 * The pool service, its layer, and `submit`, `map`, `mapExits` and `stream`.
 *
 * @since 0.1.0
 */
export * as ProcessPool from "./ProcessPool.ts"

/**
 * Task contracts shared by the parent and the workers.
 *
 * @since 0.1.0
 */
export * as Task from "./Task.ts"

/**
 * The worker side: handlers and the services they need.
 *
 * @since 0.1.0
 */
export * as Worker from "./Worker.ts"
