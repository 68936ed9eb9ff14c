"""The one error `seqpose train` reports as a message (bad config values, missing data, a run that cannot resume)."""


class TrainingError(RuntimeError):
    pass
