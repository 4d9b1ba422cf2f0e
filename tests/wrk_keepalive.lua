-- wrk's script for tests/wrk_load.py: on every connection GET and POST in turn, a pause between
-- requests (wrk's delay(), so the load leaves room for the deploy on a small host), and each
-- answer tallied by status and by the "version N" of a 2xx body. wrk's own summary counts only
-- statuses >= 400 and socket errors; done() prints these tallies as "moorage-wrk" lines.
--   wrk -c 8 -t 2 -d 900s --latency -s wrk_keepalive.lua URL -H "Host: NAME" -- PAUSE_MS

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   pause_ms = tonumber(args[1]) or 0
   sent = 0
   statuses = {}
   versions = {}
   post_headers = {}
   for name, value in pairs(wrk.headers) do
      post_headers[name] = value
   end
   post_headers["Content-Type"] = "text/plain"
end

function delay()
   return pause_ms
end

function request()
   sent = sent + 1
   if sent % 2 == 0 then
      return wrk.format("POST", nil, post_headers, "keep-alive probe " .. sent .. "\n")
   end
   return wrk.format("GET")
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status >= 200 and status < 300 then
      local version = string.match(body or "", "version (%S+)")
      if version then
         versions[version] = (versions[version] or 0) + 1
      end
   end
end

function done(summary, latency, requests)
   local totals = { status = {}, version = {} }
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         totals.status[status] = (totals.status[status] or 0) + count
      end
      for version, count in pairs(thread:get("versions")) do
         totals.version[version] = (totals.version[version] or 0) + count
      end
   end
   for kind, counts in pairs(totals) do
      for key, count in pairs(counts) do
         io.write(string.format("moorage-wrk %s %s %d\n", kind, tostring(key), count))
      end
   end
end
