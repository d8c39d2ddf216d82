-- wrk script for `MODE=wrk scripts/bench`: POSTs JSON events whose bodies are all different
-- (the reviewer's method: a server cannot profit from identical requests).
--
--   wrk -t2 -c32 -d10s -s bench/unique.lua <url> -- <postee-route|alertmanager>
--
-- Every body carries `seq` = thread id * 1e9 + the thread's request counter, unique over the
-- run, which the sink logs to count distinct deliveries and duplicates.
-- postee-route: the shape of bench_load's "postee-route" kind, so exactly one of the ten
--   routes of bench/cfg-route.yaml matches (chosen by seq % 10, as in bench_load).
-- alertmanager: a one-alert array like bench_load's "alertmanager" kind; the `seq` label makes
--   every alert its own group (bench/alertmanager.yml groups by seq).
-- At the end one line `WRK key=value ...` sums up: completed responses, non-2xx (wrk counts
-- status > 399), socket errors, requests sent (sent - requests = still in flight when wrk
-- stopped), latency percentiles.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  kind = args[1] or "postee-route"
  if kind ~= "postee-route" and kind ~= "alertmanager" then
    error("unknown kind " .. kind .. " (postee-route or alertmanager)")
  end
  sent = 0
  headers = { ["Content-Type"] = "application/json" }
  wrk.method = "POST"
  last_s, at_us, starts_at = -1, 0, ""
end

function request()
  sent = sent + 1
  local seq = id * 1000000000 + sent
  local now = os.time()
  if now ~= last_s then
    last_s, at_us, starts_at = now, now * 1000000, os.date("!%Y-%m-%dT%H:%M:%SZ", now)
  end
  local body
  if kind == "alertmanager" then
    body = string.format(
      '[{"labels":{"alertname":"bench","seq":"%d"},"annotations":{"seq":"%d","sent_at_us":"%d"},"startsAt":"%s"}]',
      seq, seq, at_us, starts_at)
  else
    local k = seq % 10
    local image = k < 4 and ("team-" .. k .. "/app:1.0") or "shared/app:1.0"
    local critical = (k >= 4 and k < 7) and (k * 10 + 5) or 1
    local cve = k >= 7 and ("CVE-" .. k) or "CVE-none"
    body = string.format(
      '{"seq":%d,"sent_at_us":%d,"image":"%s","registry":"bench","vulnerability_summary":{"critical":%d,"high":3},"resources":[{"resource":{"name":"openssl"},"vulnerabilities":[{"name":"%s"}]}]}',
      seq, at_us, image, critical, cve)
  end
  return wrk.format(nil, nil, headers, body)
end

function done(summary, latency, requests)
  local sent_all = 0
  for _, t in ipairs(threads) do
    sent_all = sent_all + t:get("sent")
  end
  local e = summary.errors
  io.write(string.format(
    "WRK requests=%d non2xx=%d connect=%d read=%d write=%d timeout=%d duration_us=%d sent=%d p50_us=%d p99_us=%d\n",
    summary.requests, e.status, e.connect, e.read, e.write, e.timeout, summary.duration,
    sent_all, latency:percentile(50), latency:percentile(99)))
end
