/**
 * A hand-written SVG chart of the benchmark: one panel per case, one bar per
 * pool, log scale for the throughput cases that span orders of magnitude.
 */

export interface ChartInput {
  readonly title: string
  readonly subtitle: string
  readonly pools: ReadonlyArray<{ readonly key: string; readonly label: string }>
  readonly panels: ReadonlyArray<{
    readonly title: string
    readonly unit: string
    readonly better: "higher" | "lower"
    readonly log: boolean
    readonly values: ReadonlyArray<{ readonly pool: string; readonly value: number | undefined }>
    readonly format: (value: number) => string
    /** Row labels that differ from the pool's label in this panel. */
    readonly labels?: Readonly<Record<string, string>>
  }>
}

const colors: Record<string, string> = {
  ours: "#1d4ed8",
  piscina: "#f59e0b",
  tinypool: "#10b981",
  workerpool: "#8b5cf6",
  poolifier: "#ef4444",
  "effect-rpc": "#0891b2",
  python: "#a16207",
  bare: "#6b7280"
}

const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

const short = (v: number): string => v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : `${v}`

const PANEL_W = 580
const LABEL_W = 200
const BAR_MAX = 270
const ROW_H = 22
const COLUMNS = 2

export const renderSvg = (input: ChartInput): string => {
  const labelOf = (key: string) => input.pools.find((p) => p.key === key)?.label ?? key
  const panelHeights = input.panels.map((panel) => 52 + panel.values.length * ROW_H + 14)
  const rowsOfPanels = Math.ceil(input.panels.length / COLUMNS)
  const rowHeights = Array.from(
    { length: rowsOfPanels },
    (_, r) => Math.max(...panelHeights.slice(r * COLUMNS, r * COLUMNS + COLUMNS))
  )
  const top = 64
  const width = PANEL_W * COLUMNS + 20
  const height = top + rowHeights.reduce((a, b) => a + b, 0) + 30
  const parts: Array<string> = []
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="14" y="26" font-size="17" font-weight="600" fill="#111827">${escape(input.title)}</text>`,
    `<text x="14" y="46" font-size="12" fill="#4b5563">${
      escape(input.subtitle)
    } · bars: medians; log scale where marked</text>`
  )
  input.panels.forEach((panel, index) => {
    const column = index % COLUMNS
    const row = Math.floor(index / COLUMNS)
    const x0 = 10 + column * PANEL_W
    const y0 = top + rowHeights.slice(0, row).reduce((a, b) => a + b, 0)
    const finite = panel.values.map((v) => v.value).filter((v): v is number => v !== undefined && v > 0)
    const max = finite.length === 0 ? 1 : Math.max(...finite)
    const min = finite.length === 0 ? 1 : Math.min(...finite)
    const lo = panel.log ? 10 ** Math.floor(Math.log10(min)) : 0
    const hi = panel.log ? 10 ** Math.ceil(Math.log10(max)) : max * 1.05
    const scale = (v: number) =>
      panel.log
        ? Math.max(2, ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * BAR_MAX)
        : Math.max(2, (v / hi) * BAR_MAX)
    const barX = x0 + LABEL_W
    parts.push(
      `<rect x="${x0}" y="${y0 + 4}" width="${PANEL_W - 16}" height="${panelHeights[index] - 10}" ` +
        `fill="#f9fafb" stroke="#e5e7eb" rx="6"/>`,
      `<text x="${x0 + 10}" y="${y0 + 24}" font-size="13" font-weight="600" fill="#111827">${
        escape(panel.title)
      }</text>`,
      `<text x="${x0 + 10}" y="${y0 + 40}" fill="#6b7280">${escape(panel.unit)}, ${panel.better} is better${
        panel.log ? " · log scale" : ""
      }</text>`
    )
    const chartTop = y0 + 48
    const chartBottom = chartTop + panel.values.length * ROW_H
    if (panel.log) {
      for (let decade = lo; decade <= hi * 1.0001; decade *= 10) {
        const x = barX + scale(decade)
        parts.push(
          `<line x1="${x.toFixed(1)}" y1="${chartTop - 2}" x2="${
            x.toFixed(1)
          }" y2="${chartBottom}" stroke="#d1d5db" stroke-dasharray="2,3"/>`,
          `<text x="${x.toFixed(1)}" y="${chartBottom + 11}" font-size="10" fill="#9ca3af" text-anchor="middle">${
            short(decade)
          }</text>`
        )
      }
    }
    panel.values.forEach(({ pool, value }, i) => {
      const y = chartTop + i * ROW_H
      const isOurs = pool === "ours"
      parts.push(
        `<text x="${barX - 8}" y="${y + 13}" text-anchor="end" fill="${isOurs ? "#111827" : "#374151"}"${
          isOurs ? " font-weight=\"600\"" : ""
        }>${escape(panel.labels?.[pool] ?? labelOf(pool))}</text>`
      )
      if (value === undefined || !Number.isFinite(value) || value <= 0) {
        parts.push(`<text x="${barX + 4}" y="${y + 13}" fill="#9ca3af">not measured</text>`)
        return
      }
      const w = scale(value)
      parts.push(
        `<rect x="${barX}" y="${y + 2}" width="${w.toFixed(1)}" height="${ROW_H - 7}" fill="${
          colors[pool] ?? "#6b7280"
        }" rx="2"${pool === "bare" ? " fill-opacity=\"0.55\"" : ""}/>`,
        `<text x="${(barX + w + 5).toFixed(1)}" y="${y + 13}" fill="#111827"${isOurs ? " font-weight=\"600\"" : ""}>${
          escape(panel.format(value))
        }</text>`
      )
    })
  })
  parts.push("</svg>")
  return parts.join("\n") + "\n"
}
