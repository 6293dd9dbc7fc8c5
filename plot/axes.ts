// A line plot's frame and legend, drawn on a Raster.
import { Raster, type Rgb } from "./raster.js";

/** A round axis step (1, 2 or 5 × 10^k) near raw. */
export function niceStep(raw: number): number {
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

/** Where a plot's data area lies in its image, in pixels. */
export interface PlotArea {
  left: number;
  top: number;
  width: number;
  height: number;
}

const gridGrey: Rgb = [220, 220, 220];
const black: Rgb = [0, 0, 0];

/**
 * A line plot's frame: grey grid lines at the x ticks (pixel x, label) and at round y steps
 * between yMin and yMax (placed by py), the two axes, the title and the axis names.
 */
export function drawAxes(
  image: Raster,
  area: PlotArea,
  axes: {
    xTicks: [x: number, label: string][];
    yMin: number;
    yMax: number;
    py: (y: number) => number;
    title: string;
    xName: string;
    yName: string;
  },
): void {
  const { left, top, width, height } = area;
  for (const [x, label] of axes.xTicks) {
    image.line(x, top, x, top + height, gridGrey);
    image.text(x - Raster.textWidth(label) / 2, top + height + 10, label, black);
  }
  const { yMin, yMax, py } = axes;
  const yStep = niceStep((yMax - yMin) / 6);
  for (let y = Math.ceil(yMin / yStep) * yStep; y <= yMax; y += yStep) {
    image.line(left, py(y), left + width, py(y), gridGrey);
    const label = y.toFixed(yStep < 0.1 ? 2 : 1);
    image.text(left - 10 - Raster.textWidth(label), py(y) - 7, label, black);
  }
  image.line(left, top, left, top + height, black, 2);
  image.line(left, top + height, left + width, top + height, black, 2);
  image.text(left, 8, axes.title, black, 2);
  const xNameAt = left + width / 2 - Raster.textWidth(axes.xName) / 2;
  image.text(xNameAt, image.height - 40, axes.xName, black);
  image.text(10, top - 26, axes.yName, black);
}

/** Legend entry `index` (a colour disc and its label), in the margin right of the plot area. */
export function drawLegendEntry(
  image: Raster,
  area: PlotArea,
  index: number,
  label: string,
  color: Rgb,
): void {
  const x = area.left + area.width;
  const y = area.top + 10 + index * 28;
  image.disc(x + 30, y + 6, 6, color);
  image.text(x + 45, y, label, black, 2);
}
