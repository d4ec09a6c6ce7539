export * from "../../src/testing/nodeProcess.js";
