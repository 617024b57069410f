-- Argo CD health of a mlops.seed.dev TrainingJob (Lua 5.1, as Argo CD runs it).
-- Healthy: trained and its Model registered. Degraded: the run failed, or its output was
-- rejected. Suspended: suspended, or queued in Kueue. Otherwise Progressing, including
-- while the operator has not yet seen the latest generation (its status would be stale).
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
  hs.message = "Waiting for the operator to see the TrainingJob"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to see generation " .. generation
  return hs
end

local failed = condition(status, "Failed")
if failed ~= nil and failed.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(failed)
  return hs
end
local registered = condition(status, "ModelRegistered")
if registered ~= nil and registered.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(registered)
  return hs
end
local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Model registered"
  return hs
end
if status.phase == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Progressing"
end
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  hs.message = "Phase: " .. (status.phase or "Pending")
end
return hs
