export * from "../../src/testing/etcdCluster.js";
