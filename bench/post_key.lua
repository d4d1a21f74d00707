-- wrk script for bench/fleet_bench.py: bench/post.lua's request and JSON summary, with
-- "Authorization: Bearer $API_KEY" on every request. fleet_bench sends it to the servers with
-- API keys off too, so both sides of a comparison get the same bytes and only the server differs.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "post.lua")
local key = os.getenv("API_KEY")
assert(key and key ~= "", "post_key.lua needs API_KEY")
wrk.headers["Authorization"] = "Bearer " .. key
