export * from "../../src/testing/clusterModel.js";
