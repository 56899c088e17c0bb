// The balance chart: uPlot (vendored), the balance over time and the segment's two thresholds.
import { balance, day, el } from "./dom.js";

const COLORS = {
  balance: "#1f5f8b",
  atRisk: "#b42318",
  atRiskZone: "rgba(180, 35, 24, 0.06)",
  recover: "#067647",
};
const HEIGHT = 300;

// Draws `items` ([{at, balance}]) into `host`; returns a function that tears the chart down.
export function balanceChart(host, items, thresholds) {
  const xs = items.map((p) => Date.parse(p.at) / 1000);
  const ys = items.map((p) => p.balance);
  const low = thresholds.at_risk_below;
  const high = thresholds.recover_at_or_above;
  const plot = el("div", { class: "chart-plot" });
  host.replaceChildren(plot);
  const options = {
    width: Math.max(280, host.clientWidth || 600),
    height: HEIGHT,
    scales: { x: { time: true } },
    legend: { live: true },
    cursor: { focus: { prox: 16 } },
    series: [
      {},
      {
        label: "Balance",
        stroke: COLORS.balance,
        width: 2,
        points: { show: items.length <= 60 },
        value: (u, v) => balance(v),
      },
      {
        label: `At risk below ${balance(low)}`,
        stroke: COLORS.atRisk,
        width: 1.5,
        dash: [8, 5],
        points: { show: false },
        value: () => balance(low),
      },
      {
        label: `Recovers at ${balance(high)}`,
        stroke: COLORS.recover,
        width: 1.5,
        dash: [2, 4],
        points: { show: false },
        value: () => balance(high),
      },
    ],
    axes: [
      { stroke: "#475467", grid: { stroke: "#eaecf0" }, ticks: { stroke: "#d0d5dd" } },
      {
        stroke: "#475467",
        grid: { stroke: "#eaecf0" },
        ticks: { stroke: "#d0d5dd" },
        size: 60,
        values: (u, values) => values.map((v) => balance(v)),
      },
    ],
    hooks: {
      // Shade the at-risk zone under the lower threshold.
      drawClear: [
        (u) => {
          const top = Math.max(u.bbox.top, u.valToPos(low, "y", true));
          const bottom = u.bbox.top + u.bbox.height;
          if (top >= bottom) return;
          u.ctx.save();
          u.ctx.fillStyle = COLORS.atRiskZone;
          u.ctx.fillRect(u.bbox.left, top, u.bbox.width, bottom - top);
          u.ctx.restore();
        },
      ],
    },
  };
  const data = [xs, ys, xs.map(() => low), xs.map(() => high)];
  const chart = new window.uPlot(options, data, plot);
  // What is drawn, for people who cannot see the canvas and for tests.
  Object.assign(host.dataset, {
    points: String(chart.data[0].length),
    from: String(xs[0] ?? ""),
    to: String(xs[xs.length - 1] ?? ""),
    series: chart.series.slice(1).map((s) => s.label).join("|"),
    atRiskBelow: String(low),
    recoverAtOrAbove: String(high),
  });
  const resize = new ResizeObserver(() => {
    const width = Math.max(280, host.clientWidth);
    if (width !== chart.width) chart.setSize({ width, height: HEIGHT });
  });
  resize.observe(host);
  return () => {
    resize.disconnect();
    chart.destroy();
  };
}

// A one-paragraph summary of the series, for the figure's caption.
export function describe(items, thresholds) {
  if (!items.length) return "No balance history.";
  let lowest = items[0];
  let highest = items[0];
  for (const p of items) {
    if (p.balance < lowest.balance) lowest = p;
    if (p.balance > highest.balance) highest = p;
  }
  const first = items[0];
  const last = items[items.length - 1];
  const below = items.filter((p) => p.balance < thresholds.at_risk_below).length;
  return (
    `From ${day(first.at)} to ${day(last.at)} the balance went from ${balance(first.balance)} ` +
    `to ${balance(last.balance)}; lowest ${balance(lowest.balance)} (${day(lowest.at)}), ` +
    `highest ${balance(highest.balance)} (${day(highest.at)}). ` +
    (below
      ? `${below} of ${items.length} points lie below the at-risk level of ${balance(thresholds.at_risk_below)}.`
      : `It never fell below the at-risk level of ${balance(thresholds.at_risk_below)}.`)
  );
}
