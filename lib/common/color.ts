/** FORCE_COLOR set to anything but "", "0" or "false" asks for colours even on a pipe. */
export function forceColorRequested(): boolean {
  const v = process.env.FORCE_COLOR;
  return v !== undefined && v !== "" && v !== "0" && v.toLowerCase() !== "false";
}
