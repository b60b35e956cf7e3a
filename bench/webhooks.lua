-- wrk script for the throughput scenario: posts pre-signed Twilio webhooks, each MessageSid once.
-- Each wrk thread reads its own file of "<signature>\t<form body>" lines (args[1] .. "-<thread>.txt").
-- When a thread runs out it sends GET /api/health instead and counts it as exhausted, which fails the run.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  reqs, issued, ok, other, exhausted = {}, 0, 0, 0, 0
  local n = 0
  for line in io.lines(args[1] .. "-" .. id .. ".txt") do
    local tab = line:find("\t", 1, true)
    n = n + 1
    reqs[n] = wrk.format("POST", "/api/receive_sms", {
      ["Content-Type"] = "application/x-www-form-urlencoded",
      ["X-Twilio-Signature"] = line:sub(1, tab - 1),
    }, line:sub(tab + 1))
  end
  count = n
  health = wrk.format("GET", "/api/health")
end

function request()
  if issued >= count then
    exhausted = exhausted + 1
    return health
  end
  issued = issued + 1
  return reqs[issued]
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("bench-thread %d %d %d %d %d\n",
      t:get("id"), t:get("issued"), t:get("ok"), t:get("other"), t:get("exhausted")))
  end
end
