import { candidateMachine } from "../../machines/candidate.js";
import { describeModel, recording } from "./runner.js";
import { candidateEvents, candidateTable } from "./specs/candidate.js";

describeModel({
  title: "candidate",
  table: candidateTable,
  machines: [candidateMachine],
  inputs: [{ seat: 1 }, { seat: 2 }],
  events: candidateEvents,
  machine: (log) => recording(candidateMachine, candidateTable, log),
});
