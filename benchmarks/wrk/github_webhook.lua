-- Signed GitHub webhooks for wrk, each one new: benchmarks/ingest.py runs it as
--
--   wrk -t2 -c32 -d15s -s benchmarks/wrk/github_webhook.lua URL -- REQUESTS_DIR
--
-- GitHub signs the body only, and the webhook view keeps a digest of every signed body
-- for a while (automate.replays): the same body under a new X-GitHub-Delivery is a
-- replay, answered 200 and not stored. So every request needs its own body and its own
-- signature. HMAC-SHA256 is not in wrk's Lua, so ingest.py signs them beforehand and
-- writes one file per wrk thread (REQUESTS_DIR/<thread>.txt, one request a line:
-- delivery id, signature, body, separated by tabs); each thread formats its requests
-- once in init() and sends them in turn. Past the end of its file a thread starts
-- again: those repeats get 200 (duplicate), not 202, and the report shows them.
--
-- Every response's status is counted per thread; done() prints one JSON line,
-- "WRK_JSON {...}", with the requests, the duration, wrk's errors, the latency
-- percentiles (microseconds) and the status counts.

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

local requests = {}
local next_request = 1
statuses = {}

function init(args)
   local path = args[1] .. "/" .. id .. ".txt"
   local file = assert(io.open(path, "r"))
   for line in file:lines() do
      local delivery, signature, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
      local headers = {
         ["Content-Type"] = "application/json",
         ["X-GitHub-Event"] = "pull_request",
         ["X-GitHub-Delivery"] = delivery,
         ["X-Hub-Signature-256"] = signature,
      }
      requests[#requests + 1] = wrk.format("POST", wrk.path, headers, body)
   end
   file:close()
   assert(#requests > 0, "no requests in " .. path)
end

function request()
   local raw = requests[next_request]
   next_request = next_request % #requests + 1
   return raw
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local merged = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses") or {}) do
         merged[status] = (merged[status] or 0) + count
      end
   end
   local codes = {}
   for status, count in pairs(merged) do
      codes[#codes + 1] = string.format('"%d": %d', status, count)
   end
   local e = summary.errors
   local percentiles = {}
   for _, p in ipairs({50, 90, 99, 99.9}) do
      percentiles[#percentiles + 1] = string.format('"%g": %d', p, latency:percentile(p))
   end
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, '
         .. '"write": %d, "status": %d, "timeout": %d}, "latency_us": {%s}, "status": {%s}}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      table.concat(percentiles, ", "), table.concat(codes, ", ")))
end
