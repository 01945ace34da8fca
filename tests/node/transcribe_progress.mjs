// node transcribe_progress.mjs <target> <api-key> <wav-file>
// Transcribes a recording with AudioGateway/TranscribeProgress (a server stream); prints {events, status}:
// every progress event in order (the last carries the response) and the call's final status.
import { readFileSync } from "node:fs";

import { bearer, credentials, deadline, gatewayPackage, print } from "./lib/gateway.mjs";

const [target, apiKey, wavPath] = process.argv.slice(2);
const api = gatewayPackage();
const client = new api.AudioGateway(target, credentials());
const request = {
  audio: { content: readFileSync(wavPath), mime_type: "audio/wav" },
  routing: { cache: "CACHE_MODE_BYPASS" },
};

const result = await new Promise((resolve) => {
  const events = [];
  let settled = false;
  const call = client.TranscribeProgress(request, bearer(apiKey), { deadline: deadline() });
  call.on("data", (event) => events.push(event));
  const finish = (status) => {
    if (settled) return;
    settled = true;
    resolve({ events, status });
  };
  call.on("error", (error) => finish({ code: error.code, details: error.details }));
  call.on("status", (status) => finish({ code: status.code, details: status.details }));
});
print(result);
client.close();
