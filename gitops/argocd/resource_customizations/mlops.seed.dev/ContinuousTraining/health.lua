-- Argo CD health of a mlops.seed.dev ContinuousTraining (Lua 5.1, as Argo CD runs it).
-- Healthy: its triggers are armed (Ready; with a run active or waiting for a trigger).
-- Suspended: spec.suspend is set. Degraded: Stalled, a spec only the operator can refuse (a
-- cron field out of range, an unknown time zone); it stays so until the spec changes.
-- Progressing until the operator has seen the latest generation.
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
  hs.message = "Waiting for the operator to see the ContinuousTraining"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to see generation " .. generation
  return hs
end
local stalled = condition(status, "Stalled")
local ready = condition(status, "Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
elseif ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = (ready and ready.message) or "Waiting for the Ready condition"
elseif ready.status == "True" and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = ready.message or ""
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
else
  hs.status = "Degraded"
  hs.message = describe(ready)
end
return hs
