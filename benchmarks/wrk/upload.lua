-- POST /api/similar?k=10 with a multipart photo upload (field "image"), cycling through the photos given.
-- wrk ... -s upload.lua URL -- PHOTO [PHOTO ...]
dofile(os.getenv("SIMREC_WRK_DIR") .. "/common.lua")

local bodies, next_body = {}, 1
local boundary = "simrec-wrk-boundary-7f3a"
local headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }

function init(args)
  for i = 1, #args do
    local file = assert(io.open(args[i], "rb"))
    local data = file:read("*a")
    file:close()
    local name = args[i]:match("([^/]+)$")
    bodies[#bodies + 1] = "--" .. boundary .. "\r\n"
      .. 'Content-Disposition: form-data; name="image"; filename="' .. name .. '"\r\n'
      .. "Content-Type: application/octet-stream\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n"
  end
  next_body = math.random(#bodies)
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/api/similar?k=10", headers, bodies[next_body])
end
