// node stream_transcribe.mjs <target> <api-key> <wav-file> [x-request-id]
// Streams a 16-bit mono PCM WAV through AudioGateway/StreamTranscribe: the config first, then 100 ms
// LINEAR16 chunks (waiting for the call to drain when it asks to), then a half-close. Prints
// {responses, headers} or {error, responses, headers}.
import { readFileSync } from "node:fs";

import { bearer, credentials, deadline, gatewayPackage, print } from "./lib/gateway.mjs";

const CHUNK_MS = 100;

// The format and data chunks of a RIFF/WAVE file; anything but 16-bit mono PCM is refused here.
function readWav(path) {
  const file = readFileSync(path);
  if (file.toString("ascii", 0, 4) !== "RIFF" || file.toString("ascii", 8, 12) !== "WAVE") {
    throw new Error(`${path} is not a WAV file`);
  }
  let format = null;
  for (let offset = 12; offset + 8 <= file.length; ) {
    const id = file.toString("ascii", offset, offset + 4);
    const size = file.readUInt32LE(offset + 4);
    const body = file.subarray(offset + 8, offset + 8 + size);
    if (id === "fmt ") {
      format = {
        tag: body.readUInt16LE(0),
        channels: body.readUInt16LE(2),
        rate: body.readUInt32LE(4),
        bits: body.readUInt16LE(14),
      };
    } else if (id === "data") {
      if (!format || format.tag !== 1 || format.channels !== 1 || format.bits !== 16) {
        throw new Error(`${path} is not 16-bit mono PCM`);
      }
      return { rate: format.rate, pcm: body };
    }
    offset += 8 + size + (size % 2);
  }
  throw new Error(`${path} has no data chunk`);
}

const [target, apiKey, wavPath, requestId] = process.argv.slice(2);
const { rate, pcm } = readWav(wavPath);
const api = gatewayPackage();
const client = new api.AudioGateway(target, credentials());
const call = client.StreamTranscribe(bearer(apiKey, requestId), { deadline: deadline() });

const responses = [];
let headers = {};
call.on("metadata", (received) => {
  headers = received.getMap();
});
call.on("data", (response) => responses.push(response));
const ended = new Promise((resolve) => {
  call.on("error", (error) => resolve({ error: { code: error.code, details: error.details } }));
  call.on("end", () => resolve({}));
});

async function write(message) {
  if (!call.write(message)) {
    await new Promise((resolve) => call.once("drain", resolve));
  }
}

await write({
  config: {
    encoding: "STREAM_ENCODING_LINEAR16",
    sample_rate_hertz: rate,
    interim_results: true,
    word_timestamps: true,
  },
});
const chunk = ((rate * CHUNK_MS) / 1000) * 2;
for (let offset = 0; offset < pcm.length; offset += chunk) {
  await write({ audio: pcm.subarray(offset, offset + chunk) });
}
call.end();
const outcome = await ended;
print({ ...outcome, responses, headers });
client.close();
