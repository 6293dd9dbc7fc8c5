// A dependency-free PNG line plot of the demo's loss per round.
import { drawAxes, drawLegendEntry, Raster, type Rgb } from "../plot/index.js";

export interface LossPoint {
  round: number;
  loss: number;
}

/** One named curve. */
export interface LossCurve {
  label: string;
  points: LossPoint[];
}

const PALETTE: Rgb[] = [
  [31, 119, 180],
  [255, 127, 14],
  [44, 160, 44],
  [214, 39, 40],
];

/** Loss (y) against round (x), one curve per series, as a PNG. */
export function plotLossPng(title: string, curves: LossCurve[]): Uint8Array {
  const width = 1000;
  const height = 620;
  const left = 100;
  const right = 260;
  const top = 60;
  const bottom = 80;
  const image = new Raster(width, height);
  const points = curves.flatMap((c) => c.points).filter((p) => Number.isFinite(p.loss));
  const xMax = Math.max(1, ...points.map((p) => p.round));
  const xMin = Math.min(xMax - 1, ...points.map((p) => p.round));
  const ys = points.map((p) => p.loss);
  const pad = Math.max(0.02, 0.05 * (Math.max(...ys) - Math.min(...ys)));
  const yMin = Math.min(...ys) - pad;
  const yMax = Math.max(...ys) + pad;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const px = (round: number) => left + ((round - xMin) / (xMax - xMin)) * plotW;
  const py = (loss: number) => top + ((yMax - loss) / (yMax - yMin)) * plotH;
  const area = { left, top, width: plotW, height: plotH };
  const xTicks: [number, string][] = [];
  const xStep = Math.max(1, Math.ceil((xMax - xMin) / 12));
  for (let x = xMin; x <= xMax; x += xStep) xTicks.push([px(x), String(x)]);
  drawAxes(image, area, {
    xTicks,
    yMin,
    yMax,
    py,
    title: title.toUpperCase(),
    xName: "ROUND",
    yName: "LOSS",
  });
  curves.forEach((curve, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const finite = curve.points.filter((p) => Number.isFinite(p.loss));
    for (let k = 1; k < finite.length; k++) {
      const a = finite[k - 1]!;
      const b = finite[k]!;
      image.line(px(a.round), py(a.loss), px(b.round), py(b.loss), color, 2);
    }
    for (const p of finite) image.disc(px(p.round), py(p.loss), 4, color);
    drawLegendEntry(image, area, i, curve.label.toUpperCase(), color);
  });
  return image.png();
}
