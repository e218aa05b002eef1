/**
 * Small helpers shared by the runner and the orchestrator: percentiles and
 * resident memory read from /proc.
 */
import * as fs from "node:fs"

export const percentile = (values: ReadonlyArray<number>, p: number): number => {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

export const median = (values: ReadonlyArray<number>): number => {
  const finite = values.filter((v) => Number.isFinite(v))
  if (finite.length === 0) return NaN
  const sorted = [...finite].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Resident set size of one process in kB, from /proc/<pid>/status VmRSS; 0 if it is gone. */
export const rssKb = (pid: number): number => {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
    return match === null ? 0 : Number(match[1])
  } catch {
    return 0
  }
}

/** Every live descendant of `root`, found by scanning /proc/<pid>/stat for parent pids. */
export const descendants = (root: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      // the command name is in parentheses and may hold spaces: read after the last ")"
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      const ppid = Number(fields[1])
      const list = children.get(ppid) ?? []
      list.push(Number(entry))
      children.set(ppid, list)
    } catch {
      // the process ended while we looked
    }
  }
  const out: Array<number> = []
  const walk = (pid: number) => {
    for (const child of children.get(pid) ?? []) {
      out.push(child)
      walk(child)
    }
  }
  walk(root)
  return out
}

/** Total RSS of this process and every descendant, in MB (10^6 bytes). */
export const treeMemory = (root: number) => {
  const pids = descendants(root)
  const parentKb = rssKb(root)
  const childrenKb = pids.map(rssKb)
  const totalKb = parentKb + childrenKb.reduce((a, b) => a + b, 0)
  return {
    totalMB: (totalKb * 1024) / 1e6,
    parentMB: (parentKb * 1024) / 1e6,
    childrenMB: childrenKb.map((kb) => (kb * 1024) / 1e6),
    childPids: pids
  }
}
