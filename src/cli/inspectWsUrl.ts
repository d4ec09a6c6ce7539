import { ConfigError } from "../config/index.js";

/**
 * Checks an inspection receiver URL: an absolute `ws://` or `wss://` URL with a host. Anything else
 * is refused naming the flag, before the node starts.
 */
export function parseInspectWsUrl(text: string, source = "--inspect-ws"): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(source, [`"${text}" is not a URL; expected ws://host:port or wss://host:port`]);
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:")
    throw new ConfigError(source, [
      `"${text}" has scheme ${url.protocol.replace(/:$/, "")}; expected ws:// or wss://`,
    ]);
  if (url.hostname === "") throw new ConfigError(source, [`"${text}" has no host`]);
  return url.href;
}
