-- Argo CD health check for fedtrain.dev/TrainingFederation (Lua 5.1, as Argo CD runs it).
-- Maps the member's status to Argo CD's health: Suspended while spec.suspend is set, Progressing
-- until the operator has observed the latest generation and while trainers start, Degraded when the
-- spec is invalid, the member is refused or training failed, Healthy when Ready.
local hs = { status = "Progressing", message = "Waiting for the fedtrain operator" }

local function condition(status, kind)
  if status == nil or status.conditions == nil then return nil end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then return c end
  end
  return nil
end

local status = obj.status
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "This member is suspended (spec.suspend); the federation carries on without it"
  return hs
end
if status == nil or status.observedGeneration == nil then
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil and status.observedGeneration < obj.metadata.generation then
  hs.message = "Waiting for the operator to observe generation " .. obj.metadata.generation
  return hs
end

local valid = condition(status, "Valid")
local joined = condition(status, "Joined")
local degraded = condition(status, "Degraded")
local ready = condition(status, "Ready")
if valid ~= nil and valid.status == "False" then
  hs.status = "Degraded"
  hs.message = valid.message or valid.reason
elseif status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = (ready and ready.message) or "The trainers failed"
elseif joined ~= nil and joined.status == "False" and joined.reason ~= "NotRegistered" then
  hs.status = "Degraded"
  hs.message = joined.message or joined.reason
elseif degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message or degraded.reason
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
elseif ready ~= nil then
  hs.message = ready.message or ready.reason
end
return hs
