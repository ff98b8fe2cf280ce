// Charts: thin wrappers over the vendored uPlot (canvas, no inline styles or scripts, so the
// strict Content-Security-Policy holds). Colours come from the CSS variables of the current
// colour scheme; the app re-renders its view when the scheme changes.
import uPlot from '../vendor/uplot/uPlot.esm.js';
import { h } from './ui.js';

export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export const palette = () => ['--c1', '--c2', '--c3', '--c4', '--c5', '--c6'].map(cssVar);

const observer = new ResizeObserver((entries) => {
  for (const e of entries) {
    const chart = e.target.uplot;
    const width = Math.floor(e.contentRect.width);
    if (chart && width > 0 && Math.abs(chart.width - width) > 1) chart.setSize({ width, height: chart.height });
  }
});

/**
 * A chart in a new element. `x`: numbers (seconds since the epoch for days when `time`);
 * `series`: [{label, values, color, dash, fill}]; `bars`: draw bars instead of lines.
 */
export function chart({ x, series, time = true, bars = false, height = 250, xFormat, yFormat, label }) {
  const box = h('div', { class: 'chart', role: 'img', 'aria-label': label || series.map((s) => s.label).join(', ') });
  const muted = cssVar('--muted');
  const grid = cssVar('--line');
  const axis = (extra) => ({
    stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 },
    font: '12px system-ui, sans-serif', ...extra,
  });
  const opts = {
    width: 600,
    height,
    scales: { x: { time } },
    legend: { show: true, live: true },
    cursor: { drag: { x: false, y: false }, points: { size: 6 } },
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
    axes: [
      axis(xFormat ? { values: (u, vals) => vals.map(xFormat) } : {}),
      axis({ size: 56, values: (u, vals) => vals.map((v) => (yFormat ? yFormat(v) : String(v))) }),
    ],
    series: [
      { label: time ? 'Day' : 'x', value: time ? (u, v) => (v == null ? '' : new Date(v * 1e3).toISOString().slice(0, 10)) : (u, v) => (xFormat && v != null ? xFormat(v) : v) },
      ...series.map((s) => ({
        label: s.label,
        stroke: s.color,
        width: bars ? 0 : 2,
        dash: s.dash,
        fill: bars ? s.color : s.fill,
        points: { show: false },
        paths: bars ? uPlot.paths.bars({ size: [0.7, 48], align: 0 }) : undefined,
        value: (u, v) => (v == null ? '–' : yFormat ? yFormat(v) : String(v)),
      })),
    ],
  };
  // uPlot measures its container: build once it is in the document.
  requestAnimationFrame(() => {
    opts.width = Math.max(240, Math.floor(box.clientWidth || 600));
    const u = new uPlot(opts, [x, ...series.map((s) => s.values)], box);
    box.uplot = u;
    observer.observe(box);
  });
  return box;
}

/** A softer fill of a colour (for the area under the current period's line). */
export function soft(color, alpha = 0.12) {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return undefined;
  const n = parseInt(m[1], 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
