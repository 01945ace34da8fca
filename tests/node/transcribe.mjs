// node transcribe.mjs <target> <api-key> <wav-file> [x-request-id]
// Transcribes a recording with AudioGateway/Transcribe; prints {reply, headers} or {error, headers}.
import { readFileSync } from "node:fs";

import { bearer, credentials, gatewayPackage, print, unary } from "./lib/gateway.mjs";

const [target, apiKey, wavPath, requestId] = process.argv.slice(2);
const api = gatewayPackage();
const client = new api.AudioGateway(target, credentials());
const request = {
  audio: { content: readFileSync(wavPath), mime_type: "audio/wav" },
  routing: { cache: "CACHE_MODE_BYPASS" },
};
print(await unary(client, "Transcribe", request, bearer(apiKey, requestId)));
client.close();
