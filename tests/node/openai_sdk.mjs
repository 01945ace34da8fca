// node openai_sdk.mjs <base-url> <api-key> <wav-file> <speech-out-file> <text>
// The official openai package against the gateway's OpenAI-compatible API, as a Node program written for
// OpenAI would use it with only its base URL changed: a transcription as json and as srt, speech as mp3
// (written to <speech-out-file>), and a call with a wrong key. Prints what each returned as JSON.
import { createReadStream, writeFileSync } from "node:fs";

import OpenAI from "openai";

const [baseURL, apiKey, wavPath, speechPath, text] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 25_000 });

const transcription = await client.audio.transcriptions.create({
  file: createReadStream(wavPath),
  model: "whisper-1",
  language: "en",
});
const srt = await client.audio.transcriptions.create({
  file: createReadStream(wavPath),
  model: "whisper-1",
  language: "en",
  response_format: "srt",
});
const speech = await client.audio.speech
  .create({ model: "tts-1", voice: "alloy", input: text, response_format: "mp3" })
  .asResponse();
const audio = Buffer.from(await speech.arrayBuffer());
writeFileSync(speechPath, audio);

let refused = null;
try {
  await new OpenAI({ baseURL, apiKey: "sk-wrong", maxRetries: 0 }).models.list();
} catch (error) {
  refused = { name: error.constructor.name, status: error.status, type: error.type, message: error.message };
}

console.log(
  JSON.stringify({
    transcription,
    srt,
    speech: {
      bytes: audio.length,
      contentType: speech.headers.get("content-type"),
      transferEncoding: speech.headers.get("transfer-encoding"),
      requestId: speech.headers.get("x-request-id"),
    },
    refused,
  }),
);
