// A dependency-free PNG line plot of the demo's loss per round.
import { niceStep, Raster, type Rgb } from "../../bench/lib/raster.js";

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
  const grey: Rgb = [220, 220, 220];
  const black: Rgb = [0, 0, 0];
  const xStep = Math.max(1, Math.ceil((xMax - xMin) / 12));
  for (let x = xMin; x <= xMax; x += xStep) {
    image.line(px(x), top, px(x), top + plotH, grey);
    const label = String(x);
    image.text(px(x) - Raster.textWidth(label) / 2, top + plotH + 10, label, black);
  }
  const yStep = niceStep((yMax - yMin) / 6);
  for (let y = Math.ceil(yMin / yStep) * yStep; y <= yMax; y += yStep) {
    image.line(left, py(y), left + plotW, py(y), grey);
    const label = y.toFixed(yStep < 0.1 ? 2 : 1);
    image.text(left - 10 - Raster.textWidth(label), py(y) - 7, label, black);
  }
  image.line(left, top, left, top + plotH, black, 2);
  image.line(left, top + plotH, left + plotW, top + plotH, black, 2);
  image.text(left, 8, title.toUpperCase(), black, 2);
  image.text(left + plotW / 2 - Raster.textWidth("ROUND") / 2, height - 40, "ROUND", black);
  image.text(10, top - 26, "LOSS", black);
  curves.forEach((curve, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const finite = curve.points.filter((p) => Number.isFinite(p.loss));
    for (let k = 1; k < finite.length; k++) {
      const a = finite[k - 1]!;
      const b = finite[k]!;
      image.line(px(a.round), py(a.loss), px(b.round), py(b.loss), color, 2);
    }
    for (const p of finite) image.disc(px(p.round), py(p.loss), 4, color);
    const ly = top + 10 + i * 28;
    image.disc(width - right + 30, ly + 6, 6, color);
    image.text(width - right + 45, ly, curve.label.toUpperCase(), black, 2);
  });
  return image.png();
}
