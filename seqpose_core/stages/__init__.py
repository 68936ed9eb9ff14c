"""The runner's stages after the network: one contract for all of them.

A stage is an object built from the model and the inference section (`build(model, inference)`), with

    name              its settings section under `inference.` and its timer name in `seqpose bench`
    changes_scores    True when it changes scores: the runner applies the score threshold right after it
    initial_state()   its state at the start of a sequence (None for a stage without one)
    reset(state)      its state after a sequence break (usually initial_state())
    apply(detections, context, state) -> (detections, state)

`detections` is the frame's score-sorted list of `Detection`s; a stage returns the list the next stage gets
(changed in place or new). `context` is the frame (`FrameContext`). The state is a value the runner owns and
hands back on the next frame: a stage keeps nothing between frames itself, so `StreamRunner.reset()` is making
fresh states, and a settings change (`StreamRunner.configure`) rebuilds the stages and keeps their states.

Adding a stage: a module here with its class (a `Stage`), its settings section in `stages/config.py` (a field of
InferenceConfig), and one line in `stages.pipeline.STAGES`. This package's own import is light (its settings
live below the rest of the library: `seqpose_core.config` reads them); the stages and `build_stages` are in
`seqpose_core.stages.pipeline`.
"""


class Stage:
    """What most stages share of the contract: no score change, and a state that starts, and restarts after a
    sequence break, as None (a stage that keeps one overrides initial_state / reset)."""

    changes_scores = False

    def initial_state(self):
        return None

    def reset(self, state):
        return self.initial_state()
