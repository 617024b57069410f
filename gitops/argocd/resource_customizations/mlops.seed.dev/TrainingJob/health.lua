-- Argo CD health of a mlops.seed.dev TrainingJob (Lua 5.1, as Argo CD runs it).
-- The operator summarises every kind the same way (docs/gitops.md): Stalled=True is a failure
-- that needs someone to change something (Degraded), Reconciling=True is work in flight or a
-- wait for something that will come (Progressing), Ready=True is done (Healthy).
-- Healthy: trained and its Model registered. Degraded: the run failed, its output could
-- not be registered, or its spec was refused. Suspended: suspended, or queued in Kueue.
-- Progressing too until the operator has seen the latest generation.
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

local function text(c)
  if c.message ~= nil and c.message ~= "" then
    return c.message
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
local stalled = condition(status, "Stalled")
local reconciling = condition(status, "Reconciling")
local ready = condition(status, "Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
elseif reconciling ~= nil and reconciling.status == "True" then
  if reconciling.reason == "Suspended" or reconciling.reason == "Queued" then
    hs.status = "Suspended"
  else
    hs.status = "Progressing"
  end
  hs.message = text(reconciling)
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
elseif ready ~= nil and ready.status == "False" then
  -- Not Ready with neither summary condition: written before the operator had them.
  hs.status = "Degraded"
  hs.message = describe(ready)
else
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
end
return hs
