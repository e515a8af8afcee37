-- wrk script: every request presents the next token of a file, so the
-- gateway sees many distinct users (sessions) in turn.
-- Usage: wrk ... -s tokens.lua URL -- TOKENS_FILE
local tokens = {}
local i = 0

function init(args)
    for line in io.lines(args[1]) do
        if #line > 0 then
            tokens[#tokens + 1] = line
        end
    end
end

function request()
    i = i % #tokens + 1
    return wrk.format("GET", "/api/x", { ["Authorization"] = "Bearer " .. tokens[i] })
end
