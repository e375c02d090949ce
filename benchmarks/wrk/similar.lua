-- GET /api/products/{id}/similar?k=10 for random catalog products.
-- wrk ... -s similar.lua URL -- IDS_FILE [K]   (IDS_FILE: one percent-encoded product_id a line)
dofile(os.getenv("SIMREC_WRK_DIR") .. "/common.lua")

local ids, k = {}, "10"

function init(args)
  for line in io.lines(args[1]) do
    ids[#ids + 1] = line
  end
  k = args[2] or k
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  return wrk.format("GET", "/api/products/" .. ids[math.random(#ids)] .. "/similar?k=" .. k)
end
