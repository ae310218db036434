-- wrk script for bench/run.sh: posts tests/fixtures/simplebackups/error.json with a
-- new SimpleBackups `id` on every request (so nothing is a duplicate), and counts
-- answers by status so the run can be checked against the rows committed.
--
--   wrk -t2 -c32 -d10s -s bench/wrk-simplebackups.lua 'http://127.0.0.1:28080/hooks/wrk?token=T'

local counter = 0
local threads = {}

function setup(thread)
    thread:set("tid", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    -- Per thread: ids never repeat across threads (thread t uses t, t+100, t+200...).
    counter = 0
    n2xx = 0
    n202 = 0
    nother = 0
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    counter = counter + 1
    local id = counter * 100 + tid
    local body = '{"id": ' .. id .. ', "type": "backup", "status": "error", ' ..
        '"started_at": "2021-10-10 10:01:10", "finished_at": "2021-10-10 10:10:10", ' ..
        '"backup": {"id": 4101, "name": "Acme Project", "type": "file"}, ' ..
        '"server": {"id": 2202, "name": "Acme Server"}, ' ..
        '"storage": {"id": 3303, "name": "Acme Storage"}}'
    return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
    if status == 202 then
        n202 = n202 + 1
    elseif status >= 200 and status < 300 then
        n2xx = n2xx + 1
    else
        nother = nother + 1
    end
end

function done(summary, latency, requests)
    local a, b, c = 0, 0, 0
    for _, t in ipairs(threads) do
        a = a + t:get("n202")
        b = b + t:get("n2xx")
        c = c + t:get("nother")
    end
    io.write(string.format(
        '{"requests": %d, "duration_us": %d, "n202": %d, "other_2xx": %d, "non_2xx": %d, ' ..
        '"errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_timeout": %d, ' ..
        '"p50_ms": %.3f, "p99_ms": %.3f, "ok_per_s": %.1f}\n',
        summary.requests, summary.duration, a, b, c,
        summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        (a + b) / (summary.duration / 1e6)))
end
