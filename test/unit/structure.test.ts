/**
 * The layout rules of DEVELOPERS.md that a machine can check: no import cycle among the files under
 * lib/, cmd/ and native/ (each file's relative imports, static and dynamic), and no file under lib/
 * over 600 lines (a file that grows past it holds more than one job: split it along its seams).
 */
import { expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";

const root = join(import.meta.dir, "..", "..");
const MAX_LINES = 600;

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (path.endsWith(".ts")) out.push(path);
  }
  return out;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"(\.{1,2}\/[^"]+)"|import\(\s*"(\.{1,2}\/[^"]+)"\s*\)/g;

/** Relative imports of a file, type-only ones included (they still tie the two files together). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) out.push(resolve(dirname(file), (m[1] ?? m[2])!));
  return out;
}

/** Every cycle found by a depth-first walk, each as the list of files around it. */
function importCycles(files: string[]): string[][] {
  const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => t !== f)]));
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, "open");
    stack.push(f);
    for (const next of graph.get(f) ?? []) {
      if (!graph.has(next)) continue;
      if (state.get(next) === "open") cycles.push(stack.slice(stack.indexOf(next)).concat(next));
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(f, "done");
  };
  for (const f of files) if (!state.has(f)) visit(f);
  return cycles;
}

/** Lines as `wc -l` counts them (the newline ending the last line opens no new one). */
const lineCount = (text: string) => text.split("\n").length - (text.endsWith("\n") ? 1 : 0);

const files = ["lib", "cmd", "native"].flatMap((d) => sourceFiles(join(root, d)));

test("no import cycle among lib/, cmd/ and native/", () => {
  const cycles = importCycles(files).map((c) => c.map((f) => relative(root, f)).join(" -> "));
  expect(cycles).toEqual([]);
});

test(`no file under lib/ over ${MAX_LINES} lines`, () => {
  const long = files
    .filter((f) => f.startsWith(join(root, "lib")))
    .map((f) => ({ file: relative(root, f), lines: lineCount(readFileSync(f, "utf8")) }))
    .filter((f) => f.lines > MAX_LINES)
    .map((f) => `${f.file}: ${f.lines} lines`);
  expect(long).toEqual([]);
});

test("the cycle finder reports a planted cycle (so an empty answer means something)", () => {
  const dir = mkdtempSync(join(tmpdir(), "wolf-cycle-"));
  try {
    writeFileSync(join(dir, "a.ts"), 'import { b } from "./b.ts";\nexport const a = b;\n');
    writeFileSync(join(dir, "b.ts"), 'import type { c } from "./c.ts";\nexport const b = 1 as c;\n');
    writeFileSync(join(dir, "c.ts"), 'export type c = number;\nexport const load = () => import("./a.ts");\n');
    const cycles = importCycles(sourceFiles(dir)).map((c) => c.map((f) => relative(dir, f)));
    expect(cycles).toHaveLength(1);
    expect([...new Set(cycles[0])].sort()).toEqual(["a.ts", "b.ts", "c.ts"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
