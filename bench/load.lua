-- wrk script: each request picks one pre-generated line of a file.
-- For POST scenarios the line is a JSON body; for GET scenarios it is a path.
-- Usage: wrk ... -s bench/load.lua URL -- FILE post|get [header]
local lines = {}
local method = "POST"
local extra_header = nil

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    if #line > 0 then lines[#lines + 1] = line end
  end
  file:close()
  method = (args[2] or "post"):upper()
  extra_header = args[3]
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end

function request()
  local line = lines[math.random(#lines)]
  local headers = {}
  if extra_header then
    local name, value = extra_header:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  if method == "GET" then
    return wrk.format("GET", line, headers)
  end
  headers["Content-Type"] = "application/json"
  return wrk.format("POST", nil, headers, line)
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "WRK_RESULT {\"requests\": %d, \"duration_us\": %d, \"p50_us\": %d, \"p95_us\": %d, \"p99_us\": %d, " ..
    "\"status_errors\": %d, \"socket_errors\": %d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
