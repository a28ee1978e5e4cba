// Point what componentize-js says back at the author's files: every
// `BUNDLE.js:LINE:COL` in stdin (an exception at start-up names the
// bundle rolldown wrote) becomes `SOURCE:LINE:COL` through the bundle's
// source map, given as the argument. Everything else passes unchanged.
import { readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { basename, dirname, relative, resolve } from "node:path";

const mapFile = process.argv[2];
const bundle = basename(mapFile, ".map");
const map = new SourceMap(JSON.parse(readFileSync(mapFile, "utf8")));
const escaped = bundle.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
// The bundle as componentize-js names it: with or without its folder.
const position = new RegExp(`(?:[^\\s@()'"]*/)?${escaped}:(\\d+):(\\d+)`, "g");
const input = readFileSync(0, "utf8");
process.stderr.write(
  input.replace(position, (whole, line, column) => {
    const entry = map.findEntry(Number(line) - 1, Number(column) - 1);
    if (!entry || entry.originalSource === undefined) {
      return whole;
    }
    // Sources are named relative to the map's folder.
    const source = relative(process.cwd(), resolve(dirname(mapFile), entry.originalSource));
    return `${source}:${entry.originalLine + 1}:${entry.originalColumn + 1}`;
  }),
);
