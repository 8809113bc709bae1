-- Gives back a member's purchases counted against a purchase limit, for
-- the stock gate's scripts that include it: `release` and
-- `give_back_purchases`.

-- Lowers the field `member` of the hash `bought` (what each member bought
-- of a product) by `units`, never below 0: a field that reaches 0 is
-- removed, and a member without a field is left without one.
local function give_back(bought, member, units)
  local had = redis.call('HGET', bought, member)
  if had then
    local left = tonumber(had) - units
    if left > 0 then
      redis.call('HSET', bought, member, string.format('%.0f', left))
    else
      redis.call('HDEL', bought, member)
    end
  end
end
