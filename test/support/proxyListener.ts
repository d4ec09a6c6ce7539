export * from "../../src/testing/proxyListener.js";
