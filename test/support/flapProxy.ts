export * from "../../src/testing/flapProxy.js";
