// Charts as SVG built with the DOM (attributes only: no inline style, so the strict CSP
// holds), each with a text summary for screen readers and a table beside it.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const W = 640;
const H = 200;
const PAD = 28;

/** A bar chart of `points` ([label, value]), labelled `summary`. */
export function bars(points, summary) {
  const max = Math.max(...points.map(([, v]) => v), 0) || 1;
  const step = (W - PAD * 2) / Math.max(points.length, 1);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, class: "chart" },
    svg("title", {}, summary),
    svg("line", { x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: "axis" }));
  points.forEach(([label, value], i) => {
    const height = ((H - PAD * 2) * value) / max;
    chart.append(svg("rect", {
      x: PAD + i * step + 1, y: H - PAD - height, width: Math.max(step - 2, 1), height, class: "bar",
    }, svg("title", {}, `${label}: ${value}`)));
  });
  if (points.length) {
    chart.append(svg("text", { x: PAD, y: H - 8, class: "tick" }, points[0][0]));
    chart.append(svg("text", { x: W - PAD, y: H - 8, class: "tick", "text-anchor": "end" }, points[points.length - 1][0]));
  }
  chart.append(svg("text", { x: PAD, y: 14, class: "tick" }, `max ${max}`));
  return chart;
}

/** A line chart of `series` ([{points: [[x, y]], cls}]) over x in [0, xMax] and y in
 * [0, yMax], labelled `summary`. */
export function lines(series, xMax, yMax, summary, xLabels = []) {
  const x = (v) => PAD + ((W - PAD * 2) * v) / (xMax || 1);
  const y = (v) => H - PAD - ((H - PAD * 2) * Math.max(v, 0)) / (yMax || 1);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary, class: "chart" },
    svg("title", {}, summary),
    svg("line", { x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: "axis" }),
    svg("line", { x1: PAD, y1: PAD, x2: PAD, y2: H - PAD, class: "axis" }));
  for (const s of series) {
    if (!s.points.length) continue;
    chart.append(svg("polyline", {
      points: s.points.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(" "), class: s.cls,
    }));
  }
  xLabels.forEach(([at, text], i) => chart.append(svg("text", {
    x: x(at), y: H - 8, class: "tick", "text-anchor": i === 0 ? "start" : "end",
  }, text)));
  chart.append(svg("text", { x: PAD + 4, y: 14, class: "tick" }, `${yMax}`));
  return chart;
}
