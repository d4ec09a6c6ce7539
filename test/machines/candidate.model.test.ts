import { candidateMachine } from "../../machines/candidate.js";
import { describeModel, recording } from "./runner.js";
import { candidateEvents, candidateTable } from "./specs/candidate.js";

describeModel({
  title: "candidate",
  table: candidateTable,
  machines: [candidateMachine],
  inputs: [{ slot: 1 }, { slot: 2 }],
  events: candidateEvents,
  machine: (log) => recording(candidateMachine, candidateTable, log),
});
