/** NO_COLOR set to anything non-empty turns colours off (no-color.org). */
export function noColorRequested(): boolean {
  const v = process.env.NO_COLOR;
  return v !== undefined && v !== "";
}

/** FORCE_COLOR set to anything but "", "0" or "false" asks for colours even on a pipe. */
export function forceColorRequested(): boolean {
  const v = process.env.FORCE_COLOR;
  return v !== undefined && v !== "" && v !== "0" && v.toLowerCase() !== "false";
}
