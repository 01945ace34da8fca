// node list_services.mjs <target> [symbol]
// Asks grpc.reflection.v1alpha.ServerReflection, with no API key (reflection is open to tooling), for the
// services the server exposes and, given a symbol, the .proto files that define it and its dependencies.
// Prints {services, files, error}; files are the names inside the returned FileDescriptorProtos.
import { createRequire } from "node:module";

import { credentials, deadline, loadPackage, print, VENDORED_PROTOS } from "./lib/gateway.mjs";

const require = createRequire(import.meta.url);
// protobufjs (proto-loader's parser) ships descriptor.proto's types; only the file name is read here.
const descriptor = require("protobufjs/ext/descriptor");

const [target, symbol] = process.argv.slice(2);
const reflection = loadPackage(["grpc/reflection/v1alpha/reflection.proto"], [VENDORED_PROTOS]).grpc
  .reflection.v1alpha;
const client = new reflection.ServerReflection(target, credentials());

const result = await new Promise((resolve) => {
  const out = { services: [], files: [], error: null };
  const call = client.ServerReflectionInfo({ deadline: deadline() });
  call.on("data", (response) => {
    if (response.message_response === "list_services_response") {
      out.services = response.list_services_response.service.map((s) => s.name);
    } else if (response.message_response === "file_descriptor_response") {
      out.files = response.file_descriptor_response.file_descriptor_proto.map(
        (bytes) => descriptor.FileDescriptorProto.decode(bytes).name,
      );
    } else if (response.message_response === "error_response") {
      out.error = response.error_response;
    }
  });
  call.on("error", (error) => resolve({ ...out, error: { code: error.code, details: error.details } }));
  call.on("end", () => resolve(out));
  call.write({ list_services: "" });
  if (symbol) call.write({ file_containing_symbol: symbol });
  call.end();
});
print(result);
client.close();
