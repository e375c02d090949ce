-- GET /api/products?offset=N&limit=50: random pages of the catalog.
-- wrk ... -s products.lua URL -- N_ITEMS
dofile(os.getenv("SIMREC_WRK_DIR") .. "/common.lua")

local n_items = 50

function init(args)
  n_items = tonumber(args[1]) or n_items
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local offset = math.random(0, math.max(0, n_items - 50))
  return wrk.format("GET", "/api/products?offset=" .. offset .. "&limit=50")
end
