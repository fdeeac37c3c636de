// A small line chart drawn with SVG elements made through the DOM
// (createElementNS, setAttribute): no markup is ever parsed, no inline
// style (the CSP forbids it; console.css styles the classes). Each chart is a
// figure with a caption and a text alternative (latest value and maximum)
// that the SVG is described by.

// The SVG namespace: an XML name, never fetched.
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 320;
const HEIGHT = 100;
const PAD = 4;

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function rate(value) {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

// chart = lineChart("requests", "Requests per second"); chart.figure goes in
// the page; chart.draw(points, spanMs) with points [{t: ms, v: per second}]
// and the longest time span to show.
export function lineChart(id, caption, kind) {
  const summaryId = `${id}-summary`;
  const root = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img",
    "aria-labelledby": `${id}-caption`, "aria-describedby": summaryId,
    preserveAspectRatio: "none", class: `chart-svg chart-${kind}` });
  root.append(svg("rect", { x: 0, y: 0, width: WIDTH, height: HEIGHT, class: "chart-frame" }));
  const line = svg("polyline", { points: "", class: "chart-line" });
  root.append(line);
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.id = id;
  const heading = document.createElement("figcaption");
  heading.id = `${id}-caption`;
  heading.textContent = caption;
  const summary = document.createElement("p");
  summary.id = summaryId;
  summary.className = "chart-summary";
  summary.textContent = "Waiting for two scrapes of /metrics...";
  figure.append(heading, root, summary);

  function draw(points, spanMs) {
    if (points.length === 0) return;
    const max = Math.max(...points.map((p) => p.v));
    const top = max > 0 ? max * 1.1 : 1;
    // The time axis spans the data, at least a minute and at most spanMs.
    const end = points[points.length - 1].t;
    const span = Math.min(spanMs, Math.max(60000, end - points[0].t));
    const start = end - span;
    const xy = points.map((p) => {
      const x = PAD + ((p.t - start) / span) * (WIDTH - 2 * PAD);
      const y = HEIGHT - PAD - (p.v / top) * (HEIGHT - 2 * PAD);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    line.setAttribute("points", xy.join(" "));
    const latest = points[points.length - 1].v;
    const seconds = Math.round((end - points[0].t) / 1000);
    const over = seconds < 120 ? `${seconds} s` : `${Math.round(seconds / 60)} minutes`;
    summary.textContent = `Now ${rate(latest)}/s; at most ${rate(max)}/s over the last `
      + `${over} (${points.length} points).`;
  }

  return { figure, line, draw };
}
