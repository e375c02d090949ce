-- GET /images/{id}: random catalog products' photos.
-- wrk ... -s photos.lua URL -- IDS_FILE
dofile(os.getenv("SIMREC_WRK_DIR") .. "/common.lua")

local ids = {}

function init(args)
  for line in io.lines(args[1]) do
    ids[#ids + 1] = line
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  return wrk.format("GET", "/images/" .. ids[math.random(#ids)])
end
