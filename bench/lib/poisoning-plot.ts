// The poisoning benchmark's picture: one grid per setting and codec, an attack per row and a rule
// per column, each cell the final eval loss against the clean run of its setting and codec (in
// percent, coloured by how far it is).
import { Raster, type Rgb } from "../../plot/index.js";

/** What a cell needs of a benchmark row. */
export interface PlotRow {
  attack: string;
  setting: string;
  codec: string;
  rule: string;
  vsCleanPercent: number;
}

const ATTACK_ROWS: [name: string, label: string][] = [
  ["none", "NO ATTACK"],
  ["absent", "HONEST ONLY"],
  ["signFlip10", "SIGN-FLIP X10"],
  ["alie1", "ALIE Z=1"],
  ["alie1.5", "ALIE Z=1.5"],
  ["ipm0.1", "IPM E=0.1"],
  ["ipm10", "IPM E=10"],
  ["wrongData", "WRONG DATA"],
];

/** Rule columns: a short label, and the rule names (with the tolerated count) it stands for. */
const RULE_COLUMNS: [label: string, test: (rule: string) => boolean, legend: string][] = [
  ["MEAN", (r) => r === "mean", ""],
  ["MED", (r) => r === "median", "MED: COORDINATE-WISE MEDIAN"],
  ["TM", (r) => /^trimmedMean\(/.test(r), "TM: TRIMMED MEAN TOLERATING THE ATTACKERS"],
  [
    "NB+TM",
    (r) => /^normBound\+trimmedMean\(/.test(r),
    "NB+: BEHIND A NORM BOUND (DROP ABOVE 3X MEDIAN)",
  ],
  ["CC", (r) => r.startsWith("centredClip"), "CC: CENTRED CLIPPING FROM THE LAST AGGREGATE"],
  [
    "SMED",
    (r) => r === "sparseMedian",
    "S: SPARSE (TOP-K: ONLY THE UPDATES THAT SENT A VALUE VOTE)",
  ],
  ["STM", (r) => /^sparseTrimmedMean\(/.test(r), ""],
  ["NB+STM", (r) => /^normBound\+sparseTrimmedMean\(/.test(r), ""],
];

const BANDS: [upTo: number, color: Rgb, label: string][] = [
  [1, [120, 200, 120], "WITHIN 1 %"],
  [5, [200, 230, 140], "WITHIN 5 %"],
  [20, [250, 200, 110], "WITHIN 20 %"],
  [Number.POSITIVE_INFINITY, [230, 110, 100], "WORSE"],
];
const NOT_RUN: Rgb = [235, 235, 235];
const BLACK: Rgb = [0, 0, 0];

const CELL_W = 78;
const CELL_H = 28;
const LABEL_W = 185;
const PANEL_W = LABEL_W + RULE_COLUMNS.length * CELL_W + 30;
const PANEL_H = 70 + ATTACK_ROWS.length * CELL_H + 20;
const LEGEND_H = 150;

/** A 2 × 2 grid of panels (dense and top-k; 1 of 4 and 2 of 7 attackers) and the legend. */
export function poisoningPng(rows: readonly PlotRow[], title: string): Uint8Array {
  const settings = [...new Set(rows.map((r) => r.setting))].sort();
  const codecs = [...new Set(rows.map((r) => r.codec))].sort();
  const width = PANEL_W * Math.max(1, settings.length);
  const height = 50 + PANEL_H * Math.max(1, codecs.length) + LEGEND_H;
  const image = new Raster(width, height);
  image.text(20, 15, title, BLACK, 2);
  codecs.forEach((codec, i) => {
    settings.forEach((setting, j) => {
      const panel = rows.filter((r) => r.codec === codec && r.setting === setting);
      const [attackers, workers] = setting.split("/");
      drawPanel(
        image,
        j * PANEL_W,
        50 + i * PANEL_H,
        panel,
        `${codec === "topk" ? "TOP-K 5 % 4-BIT" : "DENSE FP32"}, ${attackers} OF ${workers} ATTACKING`,
      );
    });
  });
  drawLegend(image, 20, 50 + PANEL_H * codecs.length + 10);
  return image.png();
}

function drawPanel(image: Raster, x: number, y: number, rows: readonly PlotRow[], title: string) {
  image.text(x + 20, y + 8, title, BLACK, 2);
  RULE_COLUMNS.forEach(([label], c) => {
    const cx = x + LABEL_W + c * CELL_W;
    image.text(cx + (CELL_W - Raster.textWidth(label, 2)) / 2, y + 40, label, BLACK, 2);
  });
  ATTACK_ROWS.forEach(([attack, label], r) => {
    const cy = y + 62 + r * CELL_H;
    image.text(x + 20, cy + 8, label, BLACK, 2);
    RULE_COLUMNS.forEach(([, test], c) => {
      const cx = x + LABEL_W + c * CELL_W;
      const row = rows.find((one) => one.attack === attack && test(one.rule));
      const color = row ? bandOf(row.vsCleanPercent) : NOT_RUN;
      image.rect(cx + 1, cy + 1, CELL_W - 2, CELL_H - 2, color);
      if (row) {
        const text = cellText(row.vsCleanPercent);
        image.text(cx + (CELL_W - Raster.textWidth(text, 2)) / 2, cy + 7, text, BLACK, 2);
      }
    });
  });
}

function drawLegend(image: Raster, x: number, y: number) {
  image.text(
    x,
    y,
    "CELLS: FINAL EVAL LOSS VS THE CLEAN RUN OF ITS SETTING AND CODEC, IN % (NX: N TIMES IT)",
    BLACK,
    2,
  );
  BANDS.forEach(([, color, label], i) => {
    const bx = x + i * 230;
    image.rect(bx, y + 24, 24, 18, color);
    image.text(bx + 32, y + 27, label, BLACK, 2);
  });
  image.rect(x + 4 * 230, y + 24, 24, 18, NOT_RUN);
  image.text(x + 4 * 230 + 32, y + 27, "NOT RUN", BLACK, 2);
  RULE_COLUMNS.filter(([, , legend]) => legend).forEach(([, , legend], i) => {
    const column = i % 2;
    const line = Math.floor(i / 2);
    image.text(x + column * 760, y + 56 + line * 22, legend, BLACK, 2);
  });
}

function bandOf(percent: number): Rgb {
  return (BANDS.find(([upTo]) => percent <= upTo) ?? BANDS[BANDS.length - 1]!)[1];
}

function cellText(percent: number): string {
  // Past +999 %, how many times the clean loss.
  if (percent >= 1000) return `${Math.round(1 + percent / 100)}X`;
  const rounded = Math.abs(percent) < 10 ? percent.toFixed(1) : percent.toFixed(0);
  return percent >= 0 ? `+${rounded}` : rounded;
}
