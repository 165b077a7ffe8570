// Learning's API is written in the core's value types (TrialConfig, EpochRecord, TrialStatus,
// …), which were defined here before SweepCore existed: re-exported, so that the modules and
// tests importing Learning (dozens of files) see them without an import of their own.
@_exported import SweepCore
