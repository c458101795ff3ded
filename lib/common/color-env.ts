/**
 * Imported first by cmd/wolf.ts, before citty: citty decides about colours when it loads and only
 * honours NO_COLOR=1 exactly. We follow no-color.org (any non-empty NO_COLOR) and also turn colours
 * off when stdout is not a terminal, unless FORCE_COLOR is set.
 */
const wantsNoColor = (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== "") || !process.stdout.isTTY;
if (wantsNoColor && !process.env.FORCE_COLOR) process.env.NO_COLOR = "1";
