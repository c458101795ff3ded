/** Renders the fully commented config file that `wolf <sub> init` writes: every key, its doc and default. */
import type { AnySpec, ConfigSchema, Fields, FieldSpec, InferFields } from "./schema.ts";

function comment(doc: string, indent = ""): string {
  return doc
    .split("\n")
    .map((line) => `${indent}# ${line}`.trimEnd())
    .join("\n");
}

function renderFieldLines(fields: Fields, values: Record<string, unknown>, commentOut = false): string[] {
  const lines: string[] = [];
  for (const [key, spec] of Object.entries(fields) as [string, AnySpec][]) {
    if (spec.kind !== "field") continue;
    const f = spec as FieldSpec<unknown>;
    const value = key in values ? values[key] : f.default;
    lines.push(comment(f.doc));
    const isDefault = JSON.stringify(value) === JSON.stringify(f.default);
    lines.push(
      `${commentOut ? "# " : ""}${key} = ${f.render(value)}${isDefault || commentOut ? "" : `  # default: ${f.render(f.default)}`}`,
    );
    lines.push("");
  }
  return lines;
}

/**
 * `values` overrides the defaults (e.g. generated secrets, --address); keys not given keep their
 * default. Sections are always written, table arrays as a commented example.
 */
export function renderConfig<F extends Fields>(schema: ConfigSchema<F>, values: Partial<InferFields<F>> = {}): string {
  const v = values as Record<string, unknown>;
  const out: string[] = [
    comment(schema.title),
    comment(`Every key is shown with its default. Unknown keys are rejected.`),
    "",
  ];
  out.push(...renderFieldLines(schema.fields, v));
  for (const [key, spec] of Object.entries(schema.fields) as [string, AnySpec][]) {
    if (spec.kind === "section") {
      out.push(comment(spec.doc), `[${key}]`);
      out.push(...renderFieldLines(spec.fields, (v[key] as Record<string, unknown>) ?? {}));
    } else if (spec.kind === "tables") {
      const entries = (v[key] as Record<string, unknown>[] | undefined) ?? [];
      out.push(comment(spec.doc));
      if (entries.length === 0) {
        out.push(comment(`Example (remove the leading "# " to use):`), `# [[${key}]]`);
        out.push(...renderFieldLines(spec.fields, (spec.example as Record<string, unknown>) ?? {}, true));
      }
      for (const entry of entries) {
        out.push(`[[${key}]]`);
        out.push(...renderFieldLines(spec.fields, entry));
      }
    }
  }
  return `${out
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trimEnd()}\n`;
}

/** Values produced by each field's `generate` (secrets, ids), nested like the config. */
export function generatedValues<F extends Fields>(schema: ConfigSchema<F>): Partial<InferFields<F>> {
  const walk = (fields: Fields): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [key, spec] of Object.entries(fields) as [string, AnySpec][]) {
      if (spec.kind === "field" && spec.generate) out[key] = spec.generate();
      else if (spec.kind === "section") {
        const inner = walk(spec.fields);
        if (Object.keys(inner).length) out[key] = inner;
      }
    }
    return out;
  };
  return walk(schema.fields) as Partial<InferFields<F>>;
}
