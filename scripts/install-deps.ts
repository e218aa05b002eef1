/**
 * `node scripts/install-deps.ts <dir> [--link]`: installs the dependencies of
 * a sub-package that the library and its tests do not need (`bench/`, `docs/`),
 * so that `npm install` at the root stays small. It runs `npm ci` in `<dir>`
 * when `<dir>/node_modules` is missing or was installed from another
 * `package-lock.json`, and does nothing otherwise.
 *
 * `--link` also links this repository as `<dir>/node_modules/effect-process-pool`,
 * so code in `<dir>` imports the package by name and, without this
 * repository's own export condition, gets the built `dist/`, as a user does.
 */
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"

const [dir, ...flags] = process.argv.slice(2)
if (dir === undefined) {
  process.stderr.write("usage: node scripts/install-deps.ts <dir> [--link]\n")
  process.exit(2)
}

const root = path.resolve(import.meta.dirname, "..")
const modules = path.resolve(root, dir, "node_modules")
const stamp = path.join(modules, ".installed-from")
const lock = createHash("sha256").update(fs.readFileSync(path.resolve(root, dir, "package-lock.json"))).digest("hex")
const link = path.join(modules, "effect-process-pool")

const installed = () => {
  try {
    return fs.readFileSync(stamp, "utf8") === lock
  } catch {
    return false
  }
}

if (!installed()) {
  process.stderr.write(`installing the dependencies of ${dir}/ from its package-lock.json\n`)
  const npm = spawnSync("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=error"], {
    cwd: path.resolve(root, dir),
    stdio: "inherit",
    shell: process.platform === "win32"
  })
  if (npm.status !== 0) process.exit(npm.status ?? 1)
  fs.writeFileSync(stamp, lock)
}

if (flags.includes("--link") && !fs.existsSync(link)) {
  // A junction on Windows, where it needs no privilege; a relative symlink elsewhere.
  fs.symlinkSync(path.relative(modules, root), link, "junction")
}
