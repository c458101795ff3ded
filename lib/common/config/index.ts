export * from "./schema.ts";
export * from "./load.ts";
export * from "./render.ts";
export * from "./files.ts";
export * from "./common-sections.ts";
export { nearest, editDistance } from "./suggest.ts";
