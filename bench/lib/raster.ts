// A tiny rasteriser and PNG writer with a 5×7 font, so plots need no native or downloaded
// packages. Used by the diloco benchmark and the demo.
import { deflateSync } from "node:zlib";

/** An RGB colour. */
export type Rgb = readonly [number, number, number];

/** An RGB image with the few drawing operations the plot needs. */
export class Raster {
  readonly pixels: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.pixels = new Uint8Array(width * height * 3).fill(255);
  }

  set(x: number, y: number, color: Rgb): void {
    const px = Math.round(x);
    const py = Math.round(y);
    if (px < 0 || py < 0 || px >= this.width || py >= this.height) return;
    this.pixels.set(color, (py * this.width + px) * 3);
  }

  rect(x: number, y: number, w: number, h: number, color: Rgb): void {
    for (let j = 0; j < h; j++) for (let i = 0; i < w; i++) this.set(x + i, y + j, color);
  }

  line(x0: number, y0: number, x1: number, y1: number, color: Rgb, thickness = 1): void {
    const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    const r = (thickness - 1) / 2;
    for (let s = 0; s <= steps; s++) {
      const x = x0 + ((x1 - x0) * s) / steps;
      const y = y0 + ((y1 - y0) * s) / steps;
      for (let dy = -r; dy <= r; dy++)
        for (let dx = -r; dx <= r; dx++) this.set(x + dx, y + dy, color);
    }
  }

  disc(cx: number, cy: number, radius: number, color: Rgb): void {
    for (let dy = -radius; dy <= radius; dy++) {
      for (let dx = -radius; dx <= radius; dx++) {
        if (dx * dx + dy * dy <= radius * radius) this.set(cx + dx, cy + dy, color);
      }
    }
  }

  /** Draws text in a 5×7 pixel font (upper case, digits, a little punctuation), `scale`× size. */
  text(x: number, y: number, text: string, color: Rgb, scale = 2): void {
    let cursor = x;
    for (const char of text.toUpperCase()) {
      const columns = FONT[char] ?? FONT["?"]!;
      columns.forEach((bits, column) => {
        for (let row = 0; row < 7; row++) {
          if ((bits >> row) & 1)
            this.rect(cursor + column * scale, y + row * scale, scale, scale, color);
        }
      });
      cursor += 6 * scale;
    }
  }

  /** Width in pixels of `text` drawn at `scale`. */
  static textWidth(text: string, scale = 2): number {
    return text.length * 6 * scale;
  }

  png(): Uint8Array {
    const raw = new Uint8Array((this.width * 3 + 1) * this.height);
    for (let y = 0; y < this.height; y++) {
      raw[y * (this.width * 3 + 1)] = 0;
      raw.set(
        this.pixels.subarray(y * this.width * 3, (y + 1) * this.width * 3),
        y * (this.width * 3 + 1) + 1,
      );
    }
    const header = new Uint8Array(13);
    const view = new DataView(header.buffer);
    view.setUint32(0, this.width);
    view.setUint32(4, this.height);
    header.set([8, 2, 0, 0, 0], 8);
    return concat([
      Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a),
      chunk("IHDR", header),
      chunk("IDAT", deflateSync(raw)),
      chunk("IEND", new Uint8Array(0)),
    ]);
  }
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** 5×7 glyphs, one byte per column, bit 0 at the top (the classic HD44780-style font). */
const FONT: Record<string, readonly number[]> = {
  " ": [0, 0, 0, 0, 0],
  A: [0x7c, 0x12, 0x11, 0x12, 0x7c],
  B: [0x7f, 0x49, 0x49, 0x49, 0x36],
  C: [0x3e, 0x41, 0x41, 0x41, 0x22],
  D: [0x7f, 0x41, 0x41, 0x22, 0x1c],
  E: [0x7f, 0x49, 0x49, 0x49, 0x41],
  F: [0x7f, 0x09, 0x09, 0x09, 0x01],
  G: [0x3e, 0x41, 0x49, 0x49, 0x7a],
  H: [0x7f, 0x08, 0x08, 0x08, 0x7f],
  I: [0x00, 0x41, 0x7f, 0x41, 0x00],
  J: [0x20, 0x40, 0x41, 0x3f, 0x01],
  K: [0x7f, 0x08, 0x14, 0x22, 0x41],
  L: [0x7f, 0x40, 0x40, 0x40, 0x40],
  M: [0x7f, 0x02, 0x0c, 0x02, 0x7f],
  N: [0x7f, 0x04, 0x08, 0x10, 0x7f],
  O: [0x3e, 0x41, 0x41, 0x41, 0x3e],
  P: [0x7f, 0x09, 0x09, 0x09, 0x06],
  Q: [0x3e, 0x41, 0x51, 0x21, 0x5e],
  R: [0x7f, 0x09, 0x19, 0x29, 0x46],
  S: [0x46, 0x49, 0x49, 0x49, 0x31],
  T: [0x01, 0x01, 0x7f, 0x01, 0x01],
  U: [0x3f, 0x40, 0x40, 0x40, 0x3f],
  V: [0x1f, 0x20, 0x40, 0x20, 0x1f],
  W: [0x3f, 0x40, 0x38, 0x40, 0x3f],
  X: [0x63, 0x14, 0x08, 0x14, 0x63],
  Y: [0x07, 0x08, 0x70, 0x08, 0x07],
  Z: [0x61, 0x51, 0x49, 0x45, 0x43],
  "0": [0x3e, 0x51, 0x49, 0x45, 0x3e],
  "1": [0x00, 0x42, 0x7f, 0x40, 0x00],
  "2": [0x42, 0x61, 0x51, 0x49, 0x46],
  "3": [0x21, 0x41, 0x45, 0x4b, 0x31],
  "4": [0x18, 0x14, 0x12, 0x7f, 0x10],
  "5": [0x27, 0x45, 0x45, 0x45, 0x39],
  "6": [0x3c, 0x4a, 0x49, 0x49, 0x30],
  "7": [0x01, 0x71, 0x09, 0x05, 0x03],
  "8": [0x36, 0x49, 0x49, 0x49, 0x36],
  "9": [0x06, 0x49, 0x49, 0x29, 0x1e],
  ".": [0x00, 0x60, 0x60, 0x00, 0x00],
  ",": [0x00, 0x50, 0x30, 0x00, 0x00],
  ":": [0x00, 0x36, 0x36, 0x00, 0x00],
  "=": [0x14, 0x14, 0x14, 0x14, 0x14],
  "%": [0x23, 0x13, 0x08, 0x64, 0x62],
  "-": [0x08, 0x08, 0x08, 0x08, 0x08],
  "+": [0x08, 0x08, 0x3e, 0x08, 0x08],
  "(": [0x00, 0x1c, 0x22, 0x41, 0x00],
  ")": [0x00, 0x41, 0x22, 0x1c, 0x00],
  "/": [0x20, 0x10, 0x08, 0x04, 0x02],
  "?": [0x02, 0x01, 0x51, 0x09, 0x06],
};

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
