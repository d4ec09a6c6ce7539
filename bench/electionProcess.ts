/**
 * The baseline's process: one candidate of etcd3's own `Election` recipe, campaigning until it is
 * killed, at the same TTL as the runtime's nodes. Prints `elected` on stdout when it leads.
 * Usage: node dist/bench/electionProcess.js ENDPOINTS ELECTION TTL VALUE
 */
import { Etcd3 } from "etcd3";

const [endpoints, election, ttl, value] = process.argv.slice(2);
if (!endpoints || !election || !ttl || !value) {
  process.stderr.write("usage: electionProcess.js ENDPOINTS ELECTION TTL VALUE\n");
  process.exit(2);
}
const client = new Etcd3({ hosts: endpoints.split(","), dialTimeout: 2_000 });
const campaign = client.election(election, Number(ttl)).campaign(value);
campaign.on("elected", () => process.stdout.write("elected\n"));
campaign.on("error", (err) => process.stderr.write(`campaign error: ${String(err)}\n`));
