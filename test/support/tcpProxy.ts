export * from "../../src/testing/tcpProxy.js";
