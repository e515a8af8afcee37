-- wrk script: every request presents the next token of a file, so the
-- gateway sees many distinct users (sessions) in turn.
-- Usage: wrk ... -s tokens.lua URL -- TOKENS_FILE [PATH]   (PATH: /api/x)
local tokens = {}
local i = 0
local path = "/api/x"

function init(args)
    for line in io.lines(args[1]) do
        if #line > 0 then
            tokens[#tokens + 1] = line
        end
    end
    path = args[2] or path
end

function request()
    i = i % #tokens + 1
    return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. tokens[i] })
end
