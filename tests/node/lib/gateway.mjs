// What every Node contract script shares: the gateway's .proto files loaded at run time (no codegen, as
// a Node service calling the gateway would), clients, call helpers and the JSON the scripts print.
import { fileURLToPath } from "node:url";
import path from "node:path";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_PROTOS = path.resolve(here, "../../../protos");
export const VENDORED_PROTOS = path.resolve(here, "../protos");

// Each call gets a deadline so a gateway that never answers fails the test instead of hanging it.
export const DEADLINE_MS = 10_000;

// keepCase: the scripts print the .proto's own field names, so the Python side asserts on the contract's
// names rather than protobufjs's camelCase. longs as strings: uint64 counters must not lose digits.
const LOADER_OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export function loadPackage(files, includeDirs) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(files, { ...LOADER_OPTIONS, includeDirs }));
}

export function gatewayPackage() {
  const loaded = loadPackage(
    ["gateway/api/v1/audio_gateway.proto", "gateway/api/v1/cost_reports.proto"],
    [REPO_PROTOS],
  );
  return loaded.gateway.api.v1;
}

export function bearer(apiKey, requestId) {
  const metadata = new grpc.Metadata();
  if (apiKey) metadata.set("authorization", `Bearer ${apiKey}`);
  if (requestId) metadata.set("x-request-id", requestId);
  return metadata;
}

export function deadline() {
  return new Date(Date.now() + DEADLINE_MS);
}

// A unary call as a promise of everything the caller can see: the reply or the status, the response
// headers, and the trailers (where the gateway puts x-request-id on a unary call).
export function unary(client, method, request, metadata) {
  return new Promise((resolve) => {
    let headers = {};
    let outcome = null;
    let trailers = null;
    const settle = () => {
      if (outcome !== null && trailers !== null) resolve({ ...outcome, headers, trailers });
    };
    const call = client[method](request, metadata, { deadline: deadline() }, (error, reply) => {
      outcome = error ? { error: { code: error.code, details: error.details } } : { reply };
      settle();
    });
    call.on("metadata", (received) => {
      headers = received.getMap();
    });
    call.on("status", (status) => {
      trailers = status.metadata.getMap();
      settle();
    });
  });
}

// Plain JSON: protobuf bytes print as base64 and Longs (already strings) as they are.
export function print(value) {
  const json = JSON.stringify(value, (_key, item) =>
    item && item.type === "Buffer" && Array.isArray(item.data)
      ? Buffer.from(item.data).toString("base64")
      : item,
  );
  process.stdout.write(`${json}\n`);
}

export function credentials() {
  return grpc.credentials.createInsecure();
}

export { grpc };
