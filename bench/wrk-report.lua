-- wrk script for overhead.js: a different user id per request (like real traffic; a route
-- template must keep the label set bounded anyway), an optional pace, and a JSON summary line.
--   wrk … -s wrk-report.lua URL -- <delay ms per connection between requests, 0 = flat out>
local counter = 0
local pause = 0

init = function(args)
  pause = tonumber(args[1] or "0") or 0
  -- Only paced runs get a delay(): wrk schedules every request through a timer when it exists.
  -- Jittered (mean = pause) so the connections do not fire in lockstep bursts.
  if pause > 0 then
    delay = function()
      return math.floor(pause * (0.5 + math.random()) + 0.5)
    end
  end
end

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
