export * from "../../src/testing/clusterPaths.js";
