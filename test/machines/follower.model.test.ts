import { followerMachine } from "../../machines/follower.js";
import { describeModel, recording } from "./runner.js";
import { followerEvents, followerTable } from "./specs/follower.js";

describeModel({
  title: "follower",
  table: followerTable,
  machines: [followerMachine],
  events: followerEvents,
  machine: (log) => recording(followerMachine, followerTable, log),
});
