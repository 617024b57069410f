-- Argo CD health of a mlops.seed.dev ModelDeployment (Lua 5.1, as Argo CD runs it).
-- The operator's conditions decide, the script only maps them: Degraded=True (a rollout was
-- rolled back or missed its deadline) is Degraded even while the old version still serves;
-- Ready=True is Healthy; anything else (a rollout or canary in flight, no Model chosen yet,
-- a generation the operator has not seen) is Progressing.
local function condition(status, type)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local hs = {}
local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to see the ModelDeployment"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to see generation " .. generation
  return hs
end
local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end
local progressing = condition(status, "Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing)
  return hs
end
local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
hs.status = "Progressing"
hs.message = (ready and describe(ready)) or "Waiting for the Ready condition"
return hs
