// Pin of an etcd3 1.1.2 behaviour, run as its own process because it ends the process.
// An etcd3 Watcher whose stream breaks while its revision is compacted is cancelled by etcd when
// etcd3 re-creates it. Cancelling it again, as an error handler naturally does, makes etcd answer
// for a watch etcd3 already forgot (another watcher keeps the stream open, as several views of one
// client do), and etcd3 throws "Failed to find watcher for IWatchResponse" inside gRPC's data
// handler: uncaught, so the process exits non-zero.
// Usage: node etcd3WatcherCrash.mjs <etcd endpoint>. Prints "survived" and exits 0 if it does not crash.
import { connect, createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Etcd3 } from "etcd3";

const endpoint = new URL(process.argv[2] ?? "");
const sockets = new Set();
let refusing = false;
const forwarder = createServer((client) => {
  if (refusing) return client.destroy();
  const upstream = connect(Number(endpoint.port), endpoint.hostname);
  for (const socket of [client, upstream]) {
    sockets.add(socket);
    socket.on("error", () => socket.destroy()).on("close", () => sockets.delete(socket));
  }
  client.pipe(upstream).pipe(client);
});
await new Promise((resolve) => forwarder.listen(0, "127.0.0.1", resolve));

const watching = new Etcd3({ hosts: [`http://127.0.0.1:${forwarder.address().port}`], dialTimeout: 1000 });
const writer = new Etcd3({ hosts: [`http://${endpoint.host}`], dialTimeout: 1000 });

await writer.put("pin/a").value("1");
const watcher = await watching.watch().prefix("pin/").create();
watcher.on("error", (err) => {
  console.log(`watcher error: ${err.message}`);
  void watcher.cancel().catch(() => undefined);
});
console.log("watching");

refusing = true;
for (const socket of sockets) socket.destroy();
for (let i = 0; i < 5; i++) await writer.put(`pin/${i}`).value(String(i));
const latest = await writer.get("pin/0").exec();
await writer.kv.compact({ revision: latest.header.revision, physical: true });
console.log(`compacted at ${latest.header.revision}`);
refusing = false;

await watching.watch().key("pin-other").create();
console.log("second watcher attached");

await sleep(10_000);
console.log("survived");
watching.close();
writer.close();
forwarder.close();
process.exit(0);
