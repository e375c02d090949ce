-- Shared by the endpoint scripts: per-thread counts of answers by status, and one JSON line at the end.
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

ok, busy, other = 0, 0, 0

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 503 then
    busy = busy + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local counts = { ok = 0, busy = 0, other = 0 }
  for _, thread in ipairs(threads) do
    for key, _ in pairs(counts) do
      counts[key] = counts[key] + thread:get(key)
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, "ok": %d, "busy_503": %d, '
      .. '"other_status": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    counts.ok, counts.busy, counts.other, e.connect + e.read + e.write + e.timeout))
end
