import { failoverAdvertiserMachine } from "../../machines/failoverAdvertiser.js";
import { describeModel, recording } from "./runner.js";
import { failoverAdvertiserEvents, failoverAdvertiserTable } from "./specs/failoverAdvertiser.js";

describeModel({
  title: "failoverAdvertiser",
  table: failoverAdvertiserTable,
  machines: [failoverAdvertiserMachine],
  events: failoverAdvertiserEvents,
  machine: (log) => recording(failoverAdvertiserMachine, failoverAdvertiserTable, log),
});
