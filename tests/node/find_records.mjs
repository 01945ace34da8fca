// node find_records.mjs <target> <api-key> <x-request-id> [tenant]
// The ledger records sent under one x-request-id, from CostReports/FindRecords; prints {reply} or {error}.
import { bearer, credentials, gatewayPackage, print, unary } from "./lib/gateway.mjs";

const [target, apiKey, requestId, tenant = ""] = process.argv.slice(2);
const api = gatewayPackage();
const client = new api.CostReports(target, credentials());
const { reply, error } = await unary(
  client,
  "FindRecords",
  { request_id: requestId, tenant },
  bearer(apiKey),
);
print(error ? { error } : { reply });
client.close();
