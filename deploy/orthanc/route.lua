-- Route each new mammography study to Mammo Portal once it is stable (no new instance for
-- StableAge seconds), as one Orthanc job: one association (DIMSE C-STORE to the portal's
-- DICOM node) or one STOW-RS request (DICOMweb), as the configuration's "MammoPortal"
-- section chooses. A study is routed once: what the portal sends back into it (its SR and
-- SC) makes the study stable again, and the "RoutedToPortal" metadata says it was sent.
-- A routing job that fails (the portal down) stays in Orthanc's job list as failed and is
-- logged with the call that resends it; nothing is dropped.

local function portalConfig()
  return GetOrthancConfiguration()['MammoPortal'] or {}
end

local function isMammography(studyId)
  local series = ParseJson(RestApiGet('/studies/' .. studyId .. '/series'))
  for _, one in ipairs(series) do
    if one['MainDicomTags']['Modality'] == 'MG' then
      return true
    end
  end
  return false
end

local function alreadyRouted(studyId)
  local metadata = ParseJson(RestApiGet('/studies/' .. studyId .. '/metadata?expand'))
  return metadata['RoutedToPortal'] ~= nil
end

local function routeUri(portal)
  if portal['Route'] == 'dicomweb' then
    return '/dicom-web/servers/' .. (portal['DicomWebServer'] or 'portal') .. '/stow'
  end
  return '/modalities/' .. (portal['Modality'] or 'portal') .. '/store'
end

function OnStableStudy(studyId, tags, metadata)
  if alreadyRouted(studyId) or not isMammography(studyId) then
    return
  end
  local portal = portalConfig()
  local body = DumpJson({Resources = {studyId}, Synchronous = false, Asynchronous = true}, true)
  local answer = RestApiPost(routeUri(portal), body)
  if not answer then
    print('Routing study ' .. studyId .. ' to Mammo Portal could not start; see the error above')
    return
  end
  local job = ParseJson(answer)['ID']
  RestApiPut('/studies/' .. studyId .. '/metadata/RoutedToPortal', job)
  print('Routing study ' .. studyId .. ' to Mammo Portal (' .. (portal['Route'] or 'dimse') .. '), job ' .. job)
end

function OnJobFailure(jobId)
  local job = ParseJson(RestApiGet('/jobs/' .. jobId))
  print('Job ' .. jobId .. ' (' .. job['Type'] .. ') failed: ' .. (job['ErrorDescription'] or '?') ..
        '; resend it with POST /jobs/' .. jobId .. '/resubmit')
end
