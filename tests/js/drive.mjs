// Drives the Metering Service emulator with the AWS SDK for JavaScript v3, for test_javascript_sdk.py.
//
// Reads one JSON plan on stdin:
//   {"endpoint": "http://127.0.0.1:PORT", "region": "us-east-1",
//    "credentials": {"accessKeyId": "...", "secretAccessKey": "..."},
//    "calls": [{"operation": "RegisterUsage", "input": {...}}, ...]}
// and prints one JSON document on stdout: {"sdkVersion": "3.x.y", "results": [...]}, one result per
// call, in order:
//   {"output": {...members...}, "status": 200, "requestId": "...", "authorization": "AWS4-HMAC-SHA256 ..."}
//   {"error": {"name": "...", "modeled": true, "fault": "client"|"server", "status": 400,
//              "message": "...", "requestId": "..."}, "authorization": "..."}
// "modeled" says whether the error is an instance of the SDK's own class of that name (an error the
// service model declares) rather than the generic MarketplaceMeteringServiceException.
// Timestamps cross the boundary tagged, both ways: {"$date": EPOCH_SECONDS} stands for a Date.
// Every call is made once (maxAttempts 1), so an error the service answers is the error reported.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

import * as sdk from "@aws-sdk/client-marketplace-metering";

const require = createRequire(import.meta.url);
const SDK_VERSION = require("@aws-sdk/client-marketplace-metering/package.json").version;
const DATE_TAG = "$date";

/** Replace every {"$date": seconds} in a plan's input with a Date. */
function toSdkInput(value) {
  if (Array.isArray(value)) {
    return value.map(toSdkInput);
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === DATE_TAG) {
      return new Date(value[DATE_TAG] * 1000);
    }
    return Object.fromEntries(keys.map((key) => [key, toSdkInput(value[key])]));
  }
  return value;
}

/** Replace every Date in an SDK output with {"$date": seconds}; drop $metadata and undefined. */
function fromSdkOutput(value) {
  if (value instanceof Date) {
    return { [DATE_TAG]: value.getTime() / 1000 };
  }
  if (Array.isArray(value)) {
    return value.map(fromSdkOutput);
  }
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([key, item]) => key !== "$metadata" && item !== undefined)
        .map(([key, item]) => [key, fromSdkOutput(item)]),
    );
  }
  return value;
}

function headerValue(headers, name) {
  const found = Object.keys(headers ?? {}).find((key) => key.toLowerCase() === name);
  return found === undefined ? null : headers[found];
}

async function main() {
  const plan = JSON.parse(readFileSync(0, "utf8"));
  const client = new sdk.MarketplaceMeteringClient({
    endpoint: plan.endpoint,
    region: plan.region,
    credentials: plan.credentials,
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 10_000, requestTimeout: 20_000 },
  });
  // The deserialize step runs after signing (finalizeRequest): the request seen here is the one
  // sent, Authorization header included.
  let authorization = null;
  client.middlewareStack.add(
    (next) => async (args) => {
      authorization = headerValue(args.request?.headers, "authorization");
      return next(args);
    },
    { step: "deserialize", name: "recordAuthorizationHeader" },
  );

  const results = [];
  for (const call of plan.calls) {
    const Command = sdk[`${call.operation}Command`];
    if (Command === undefined) {
      throw new Error(`the SDK has no ${call.operation}Command`);
    }
    authorization = null;
    try {
      const output = await client.send(new Command(toSdkInput(call.input)));
      results.push({
        output: fromSdkOutput(output),
        status: output.$metadata.httpStatusCode ?? null,
        requestId: output.$metadata.requestId ?? null,
        authorization,
      });
    } catch (error) {
      results.push({
        error: {
          name: error.name,
          modeled: typeof sdk[error.name] === "function" && error instanceof sdk[error.name],
          fault: error.$fault ?? null,
          status: error.$metadata?.httpStatusCode ?? null,
          message: error.message,
          requestId: error.$metadata?.requestId ?? null,
        },
        authorization,
      });
    }
  }
  client.destroy();
  process.stdout.write(`${JSON.stringify({ sdkVersion: SDK_VERSION, results })}\n`);
}

await main();
