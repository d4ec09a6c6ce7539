export * from "../../src/testing/historyChecker.js";
