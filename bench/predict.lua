-- wrk script: POST one credit application to the KServe v1 predict endpoint and print
-- the summary as one JSON line, so the runner needs no unit parsing.
wrk.method = "POST"
wrk.path = "/v1/models/credit:predict"
wrk.headers["content-type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, "errors": %d, "requests": %d}\n',
    summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    summary.requests))
end
