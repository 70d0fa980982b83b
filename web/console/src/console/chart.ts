// Small SVG line charts (no charting library to ship): each chart is an
// image with a text alternative giving the latest values, and a legend.

export interface Series { name: string; points: [number, number][] }

const W = 480;
const H = 140;
const PAD = 24;
const COLORS = ['#1f5fbf', '#b3261e', '#2e7d32', '#7b3fa0', '#a15c00', '#00696f'];

export function lineChart(title: string, series: Series[], unit = ''): HTMLElement {
  const ns = 'http://www.w3.org/2000/svg';
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const x0 = Math.min(...xs, 0), x1 = Math.max(...xs, 1);
  const y1 = Math.max(...ys, 1);
  const sx = (x: number) => PAD + ((x - x0) / (x1 - x0 || 1)) * (W - 2 * PAD);
  const sy = (y: number) => H - PAD - (y / y1) * (H - 2 * PAD);
  const latest = series.map((s) => `${s.name} ${fmt(s.points.length ? s.points[s.points.length - 1][1] : 0)}${unit}`);
  const figure = document.createElement('figure');
  figure.className = 'chart';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${title}: ${latest.join(', ') || 'no data yet'}`);
  const axis = document.createElementNS(ns, 'path');
  axis.setAttribute('d', `M${PAD} ${PAD / 2}V${H - PAD}H${W - PAD / 2}`);
  axis.setAttribute('class', 'axis');
  svg.appendChild(axis);
  const top = document.createElementNS(ns, 'text');
  top.setAttribute('x', '2'); top.setAttribute('y', '12');
  top.textContent = fmt(y1) + unit;
  svg.appendChild(top);
  series.forEach((s, i) => {
    if (!s.points.length) return;
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' '));
    line.setAttribute('fill', 'none');
    line.setAttribute('stroke', COLORS[i % COLORS.length]);
    line.setAttribute('stroke-width', '2');
    svg.appendChild(line);
  });
  const caption = document.createElement('figcaption');
  const heading = document.createElement('strong');
  heading.textContent = title;
  caption.appendChild(heading);
  series.forEach((s, i) => {
    const item = document.createElement('span');
    item.className = 'legend';
    item.style.borderColor = COLORS[i % COLORS.length];
    item.textContent = latest[i];
    caption.appendChild(item);
  });
  figure.append(caption, svg);
  return figure;
}

export function fmt(n: number): string {
  if (!isFinite(n)) return '0';
  if (Math.abs(n) >= 100) return String(Math.round(n));
  return String(Math.round(n * 10) / 10);
}
