-- wrk script for bench/serve_bench.py: send the request $METHOD (default POST) with the JSON
-- body in $BODY_FILE (none for GET) to the URL given on wrk's command line, and at the end
-- write one JSON summary — latency percentiles in µs, requests, every kind of error,
-- non-2xx answers included — to $WRK_OUT (stdout when unset). bench/loadgen.py writes the
-- same summary, so serve_bench.py reads either.
wrk.method = os.getenv("METHOD") or "POST"
local body_file = os.getenv("BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  local line = string.format(
    '{"tool":"wrk","duration_us":%d,"requests":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,' ..
    '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency:percentile(50.0),
    latency:percentile(90.0), latency:percentile(99.0), latency.max)
  local out = os.getenv("WRK_OUT")
  if out and out ~= "" then
    local o = assert(io.open(out, "w"))
    o:write(line)
    o:close()
  else
    io.write(line)
  end
end
