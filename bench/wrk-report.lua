-- wrk script for overhead.js: a different user id per request (like real traffic; a route
-- template must keep the label set bounded anyway), and a JSON summary line at the end.
local counter = 0

request = function()
  counter = counter + 1
  return wrk.format("GET", "/users/" .. ((counter % 10000) + 1))
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"durationUs":%d,"bytes":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d,"meanUs":%f,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"timeoutErrors":%d,"statusErrors":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    errors.connect, errors.read, errors.write, errors.timeout, errors.status))
end
