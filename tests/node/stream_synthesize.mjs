// node stream_synthesize.mjs <target> <api-key> <text> <format> [sample-rate] [x-request-id]
// Streams a synthesis with AudioGateway/StreamSynthesize; prints {chunks, audio, status, headers}: every
// message in order (its audio left out), the chunks' audio joined as a caller would write it to a file
// (base64), and the call's final status.
import { bearer, credentials, deadline, gatewayPackage, print } from "./lib/gateway.mjs";

const [target, apiKey, text, format, sampleRate, requestId] = process.argv.slice(2);
const api = gatewayPackage();
const client = new api.AudioGateway(target, credentials());
const request = {
  text,
  format,
  sample_rate: Number(sampleRate || 0),
  routing: { cache: "CACHE_MODE_BYPASS" },
};

const result = await new Promise((resolve) => {
  const chunks = [];
  const audio = [];
  let headers = {};
  let settled = false;
  const call = client.StreamSynthesize(request, bearer(apiKey, requestId), { deadline: deadline() });
  call.on("metadata", (received) => {
    headers = received.getMap();
  });
  call.on("data", (chunk) => {
    audio.push(chunk.audio);
    const { audio: bytes, ...rest } = chunk;
    chunks.push({ ...rest, audio_bytes: bytes.length });
  });
  const finish = (status) => {
    if (settled) return;
    settled = true;
    resolve({ chunks, audio: Buffer.concat(audio), status, headers });
  };
  call.on("error", (error) => finish({ code: error.code, details: error.details }));
  call.on("status", (status) => finish({ code: status.code, details: status.details }));
});
print(result);
client.close();
