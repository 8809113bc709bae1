-- wrk script: POST /api/v1/orders for one product, the bearer tokens of
-- many members taken in turn (one a line in $OMS_WRK_TOKENS), so that no
-- member meets its order rate. Product: $OMS_WRK_PRODUCT.
local tokens = {}
for line in io.lines(os.getenv("OMS_WRK_TOKENS")) do
  tokens[#tokens + 1] = "Bearer " .. line
end
local product = os.getenv("OMS_WRK_PRODUCT")
local body = '{"items":[{"productId":' .. product .. ',"quantity":1}],'
  .. '"receiverInfo":{"name":"Kim","phone":"010-0000-0000","address":"Seoul"}}'
local n = math.random(#tokens)
statuses = {}

-- Every request is formatted once, before the run, so that the client
-- spends its share of the cores sending, not building requests.
local requests = {}
init = function()
  for i, token in ipairs(tokens) do
    requests[i] = wrk.format("POST", "/api/v1/orders", {
      ["Content-Type"] = "application/json",
      ["Authorization"] = token,
    }, body)
  end
end

request = function()
  n = n % #requests + 1
  return requests[n]
end

response = function(status)
  statuses[status] = (statuses[status] or 0) + 1
end

-- Per thread counts of answers by status, summed at the end.
local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
end

done = function()
  local sum = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do sum[k] = (sum[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(sum) do parts[#parts + 1] = k .. "=" .. v end
  table.sort(parts)
  io.write("statuses: " .. table.concat(parts, " ") .. "\n")
end
