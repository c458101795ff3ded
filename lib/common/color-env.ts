/**
 * Imported first by cmd/wolf.ts, before citty: citty decides about colours when it loads and only
 * honours NO_COLOR=1 exactly. We follow no-color.org (any non-empty NO_COLOR wins) and also turn
 * colours off when stdout is not a terminal, unless FORCE_COLOR asks for them ("0", "false" do not).
 */
import { forceColorRequested, noColorRequested } from "./color.ts";

if (noColorRequested() || (!process.stdout.isTTY && !forceColorRequested())) {
  process.env.NO_COLOR = "1";
  delete process.env.FORCE_COLOR; // some colour detectors read FORCE_COLOR=0 as "force"
}
