"""The typed values that cross every boundary: parser records, run snapshots, judgements and the status
document's reports, and the closed sets (severity, run state, health)."""

from trainwarden.model.enums import VERDICTS, Health, RunState, Severity, severity_rank
from trainwarden.model.judgement import (
    BestEvaluation,
    Condition,
    EarlyStopStory,
    EvaluationTarget,
    HostJudgement,
    Judgement,
    LossHistory,
    LossTrend,
    PlanBCheck,
    PolicyView,
    RunGpu,
    Verdict,
)
from trainwarden.model.records import (
    ERROR_KINDS,
    FILE_EVENTS,
    BestCheckpointRemoved,
    BestCheckpointSaved,
    CheckpointDir,
    CheckpointLoaded,
    CheckpointSaved,
    ConfigFacts,
    EarlyStopCheck,
    EarlyStopTriggered,
    ErrorLine,
    EvalProgress,
    EvalRecord,
    Record,
    Resumed,
    TrainRecord,
)
from trainwarden.model.report import EvaluationReport, GpuReport, HostPolicy, LogReport, RunReport, StatusReport
from trainwarden.model.snapshot import (
    Attempt,
    BestCheckpointLine,
    Checkpoint,
    EarlyStopLog,
    EarlyStopping,
    EarlyStopPoint,
    ErrorEvent,
    Evaluation,
    GpuProcess,
    GpuSample,
    LatestTrain,
    LoadedCheckpoint,
    LogCounts,
    LogFile,
    ProcessInfo,
    Resume,
    RunSnapshot,
    SavedCheckpoint,
    Session,
    TrainPoint,
)

__all__ = [
    "ERROR_KINDS", "FILE_EVENTS", "VERDICTS", "Attempt", "BestCheckpointLine", "BestCheckpointRemoved", "BestCheckpointSaved",
    "BestEvaluation",
    "Checkpoint", "CheckpointDir", "CheckpointLoaded", "CheckpointSaved", "Condition", "ConfigFacts", "EarlyStopCheck",
    "EarlyStopLog", "EarlyStopPoint", "EarlyStopStory", "EarlyStopTriggered", "EarlyStopping", "ErrorEvent", "ErrorLine",
    "EvalProgress", "EvalRecord", "Evaluation", "EvaluationReport", "EvaluationTarget", "GpuProcess", "GpuReport",
    "GpuSample", "Health", "HostJudgement", "HostPolicy", "Judgement", "LatestTrain", "LoadedCheckpoint", "LogCounts",
    "LogFile", "LogReport", "LossHistory", "LossTrend", "PlanBCheck", "PolicyView", "ProcessInfo", "Record", "Resume", "Resumed",
    "RunGpu", "RunReport", "RunSnapshot", "RunState", "SavedCheckpoint", "Session", "Severity", "StatusReport",
    "TrainPoint", "TrainRecord", "Verdict", "severity_rank",
]
