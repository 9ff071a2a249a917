/**
 * The completion-time chart, written as SVG by hand (no dependency): for each system, the
 * share of hosts done against seconds since the start (a step CDF), with vertical markers such
 * as the bound S/B. Pure: returns the document as a string.
 */

export interface ChartSeries {
  name: string
  color: string
  /** Completion time of each host, seconds; hosts that never finished are left out. */
  times: readonly number[]
  /** Hosts in the run (the curve tops out below 100 % when some did not finish). */
  hosts: number
}

export interface ChartMarker {
  label: string
  x: number
  color?: string
  /** When false, a marker beyond the data is named in the legend instead of widening the axis. */
  stretch?: boolean
}

export interface ChartSpec {
  title: string
  subtitle?: string
  series: readonly ChartSeries[]
  markers?: readonly ChartMarker[]
  width?: number
  height?: number
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')

/** A "nice" axis maximum and tick step (1, 2 or 5 × 10^k) covering `max` with about 5–10 ticks. */
export function niceAxis(max: number): { max: number; step: number } {
  if (!(max > 0)) return { max: 1, step: 0.2 }
  const rough = max / 6
  const mag = 10 ** Math.floor(Math.log10(rough))
  const step = ([1, 2, 5, 10].find((m) => m * mag >= rough) ?? 10) * mag
  return { max: Math.ceil(max / step - 1e-9) * step, step }
}

/** The points of a step CDF: 0 until the first completion, +1/hosts at each one. */
export function cdfSteps(times: readonly number[], hosts: number): Array<[number, number]> {
  const sorted = [...times].filter(Number.isFinite).sort((a, b) => a - b)
  const pts: Array<[number, number]> = [[0, 0]]
  sorted.forEach((t, i) => {
    pts.push([t, i / hosts], [t, (i + 1) / hosts])
  })
  return pts
}

const num = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1))

export function renderChart(spec: ChartSpec): string {
  const W = spec.width ?? 760
  const H = spec.height ?? 440
  const m = { left: 64, right: 24, top: spec.subtitle ? 62 : 44, bottom: 96 }
  const pw = W - m.left - m.right
  const ph = H - m.top - m.bottom
  const markers = spec.markers ?? []
  const dataMax = Math.max(
    0,
    ...spec.series.flatMap((s) => s.times.filter(Number.isFinite)),
    ...markers.filter((k) => k.stretch !== false).map((k) => k.x),
  )
  const axis = niceAxis(dataMax * 1.05)
  const sx = (t: number) => m.left + (t / axis.max) * pw
  const sy = (f: number) => m.top + ph - f * ph
  const out: string[] = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(spec.title)}</text>`,
  )
  if (spec.subtitle)
    out.push(`<text x="${W / 2}" y="40" text-anchor="middle" fill="#555">${esc(spec.subtitle)}</text>`)
  // Grid and axes.
  for (let t = 0; t <= axis.max + 1e-9; t += axis.step) {
    const x = sx(t).toFixed(1)
    out.push(
      `<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + ph}" stroke="#eee"/>`,
      `<text x="${x}" y="${m.top + ph + 16}" text-anchor="middle">${num(Number(t.toFixed(6)))}</text>`,
    )
  }
  for (let f = 0; f <= 1.0001; f += 0.25) {
    const y = sy(f).toFixed(1)
    out.push(
      `<line x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="#eee"/>`,
      `<text x="${m.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${Math.round(f * 100)} %</text>`,
    )
  }
  out.push(
    `<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`,
    `<text x="${m.left + pw / 2}" y="${m.top + ph + 34}" text-anchor="middle">seconds since start</text>`,
    `<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">hosts complete</text>`,
  )
  const legend: Array<{ color: string; text: string; dash?: boolean }> = []
  for (const k of markers) {
    const color = k.color ?? '#888'
    if (k.x <= axis.max) {
      const x = sx(k.x).toFixed(1)
      out.push(
        `<line x1="${x}" y1="${m.top}" x2="${x}" y2="${m.top + ph}" stroke="${color}" stroke-dasharray="6 4" stroke-width="1.5"/>`,
      )
      legend.push({ color, text: `${k.label} (${num(k.x)} s)`, dash: true })
    } else legend.push({ color, text: `${k.label}: ${num(k.x)} s (off chart)`, dash: true })
  }
  for (const s of spec.series) {
    const pts = cdfSteps(s.times, s.hosts)
    const d = pts.map(([t, f], i) => `${i ? 'L' : 'M'}${sx(t).toFixed(1)} ${sy(f).toFixed(1)}`).join(' ')
    out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`)
    legend.push({ color: s.color, text: `${s.name} (${s.times.length}/${s.hosts} hosts)` })
  }
  // Legend below the plot, two columns.
  legend.forEach((l, i) => {
    const x = m.left + (i % 2) * (pw / 2)
    const y = m.top + ph + 54 + Math.floor(i / 2) * 18
    out.push(
      `<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${l.color}" stroke-width="2"${l.dash ? ' stroke-dasharray="6 4"' : ''}/>`,
      `<text x="${x + 30}" y="${y}" dominant-baseline="middle">${esc(l.text)}</text>`,
    )
  })
  out.push('</svg>')
  return `${out.join('\n')}\n`
}
