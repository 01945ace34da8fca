// node refused.mjs <target> <api-key>
// Calls the gateway wrongly on purpose and prints the status of each call:
//   no_key:      Transcribe with no authorization metadata at all
//   unknown_key: Transcribe with a key the gateway does not know
//   malformed:   Transcribe whose body is bytes that are no protobuf (a length prefix promising more
//                bytes than follow), sent through a serializer that passes them through untouched
import { bearer, credentials, deadline, gatewayPackage, grpc, print, unary } from "./lib/gateway.mjs";

const [target, apiKey] = process.argv.slice(2);
const api = gatewayPackage();
const client = new api.AudioGateway(target, credentials());
const audio = { content: Buffer.from("RIFF"), mime_type: "audio/wav" };

const noKey = await unary(client, "Transcribe", { audio }, bearer());
const unknownKey = await unary(client, "Transcribe", { audio }, bearer("no-such-key"));

const raw = new grpc.Client(target, credentials());
const passThrough = (bytes) => bytes;
const malformed = await new Promise((resolve) => {
  raw.makeUnaryRequest(
    "/gateway.api.v1.AudioGateway/Transcribe",
    passThrough,
    passThrough,
    // Field 1 (audio), length-delimited, claims 127 bytes; 3 follow.
    Buffer.from([0x0a, 0x7f, 0x01, 0x02, 0x03]),
    bearer(apiKey),
    { deadline: deadline() },
    (error, reply) =>
      resolve(error ? { code: error.code, details: error.details } : { reply_bytes: reply.length }),
  );
});

print({ no_key: noKey.error, unknown_key: unknownKey.error, malformed });
client.close();
raw.close();
