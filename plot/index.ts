// Dependency-free PNG plots, for the benchmarks and the demo.
export { drawAxes, drawLegendEntry, niceStep, type PlotArea } from "./axes.js";
export { encodePng } from "./png.js";
export { Raster, type Rgb } from "./raster.js";
