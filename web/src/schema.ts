// The shapes the API sends and takes, generated at build time from the server's OpenAPI
// document (web/openapi.json, itself generated from the server's code and checked to be
// current by its tests). Nothing here is written by hand: a change on the server shows up
// here as a type error.

import type { components } from '../generated/api-schema';

type Schemas = components['schemas'];

export type User = Schemas['User'];
/** The caller's own account, with what it must do before anything else. */
export type Me = Schemas['Me'];
export type SecondFactorSetup = Schemas['SecondFactorSetup'];
export type IssuedDeviceCertificate = Schemas['IssuedDeviceCertificate'];
export type MappingTemplate = Schemas['TemplateBody'];
export type TemplateTrial = Schemas['TrialBody'];
export type Share = Schemas['Share'];
export type ShareCategory = Schemas['ShareCategory'];
export type CreatedShare = Schemas['CreatedShare'];
export type SharedRecord = Schemas['SharedRecord'];
export type CreatedInvitation = Schemas['CreatedInvitation'];
export type Patient = Schemas['Patient'];
export type Observation = Schemas['Observation'];
export type Device = Schemas['Device'];
export type CareTeam = Schemas['CareTeam'];
export type AuditRecord = Schemas['AuditRecord'];
export type WaveformChunk = Schemas['WaveformView'];
export type EnrolledDevice = Schemas['EnrolledDevice'];
export type ObservationBucket = Schemas['ObservationBucket'];
export type ObservationSummary = Schemas['SummaryView'];
export type ObservationPage = Schemas['ObservationPageView'];
export type EmergencyAccess = Schemas['EmergencyAccess'];
export type ErrorBody = Schemas['ErrorBody'];

export type Priority = Schemas['Priority'];
export type AlarmState = Schemas['AlarmState'];
export type AlarmHistoryEvent = Schemas['AlarmEventRecord'];
export type Alarm = Schemas['AlarmView'];
export type AlarmList = Schemas['AlarmList'];
export type Recipient = Schemas['Recipient'];
export type EscalationStatus = Schemas['EscalationStatus'];
export type AlarmStreamEvent = Schemas['AlarmStreamEvent'];
export type Direction = Schemas['Direction'];
export type DeviceSelector = Schemas['DeviceSelector'];
export type RuleKind = Schemas['RuleKind'];
export type Rule = Schemas['Rule'];
export type CarePlan = Schemas['CarePlan'];
export type CarePlanVersion = Schemas['CarePlanVersionRecord'];
export type CarePlanVersions = Schemas['CarePlanVersions'];
export type CarePlanRequest = Schemas['CarePlanRequest'];
export type RuleEdit = Schemas['RuleEdit'];
export type News2 = Schemas['News2Record'];
export type RhythmEvent = Schemas['RhythmEventRecord'];
export type PatientCareTeam = Schemas['PatientCareTeamView'];
export type AccessLogEntry = Schemas['AccessLogEntry'];
export type CgmReport = Schemas['CgmReport'];
export type GatewayStatus = Schemas['GatewayStatus'];
export type DeliveryView = Schemas['DeliveryView'];
export type NightscoutSite = Schemas['SiteBody'];
export type EnabledNightscoutSite = Schemas['EnabledSiteBody'];
export type ImportSummary = Schemas['ImportSummary'];
export type Visit = Schemas['Visit'];
export type VisitStatus = Schemas['VisitStatus'];
export type VisitAttendee = Schemas['VisitAttendee'];
export type VisitRecord = Schemas['VisitRecord'];
export type VisitRequest = Schemas['VisitRequest'];
export type VisitNote = Schemas['VisitNote'];
export type VisitNoteText = Schemas['VisitNoteText'];
export type VisitMessage = Schemas['VisitMessage'];
export type PresenceSpan = Schemas['PresenceSpan'];
export type RoomEntry = Schemas['RoomEntry'];
export type IceServer = Schemas['IceServer'];
export type CarePlanInVisit = Schemas['CarePlanInVisit'];
export type TreatmentOrder = Schemas['TreatmentOrder'];
export type TreatmentOrderRequest = Schemas['TreatmentOrderRequest'];
export type MonitoringTime = Schemas['MonitoringTime'];
export type MonitoringTimeRequest = Schemas['MonitoringTimeRequest'];
export type PatientLedger = Schemas['PatientLedger'];
export type DevicePeriod = Schemas['DevicePeriod'];
export type ManagementMonth = Schemas['ManagementMonth'];
export type CodeUnits = Schemas['CodeUnits'];
export type ContactEmail = Schemas['ContactEmail'];
