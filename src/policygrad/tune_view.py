"""The live view of a tuning run: finished trials out of the goal, the best value so far, pruned and failed."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class TuneView:
    """A context manager showing ``study``'s progress towards ``trials`` finished trials on stderr."""

    def __init__(self, study: Any, trials: int, quiet: bool) -> None:
        self.study, self.trials = study, trials
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=Console(file=sys.stderr, quiet=quiet),
            refresh_per_second=2,
        )
        self.task = self.bars.add_task(f"tune {study.study_name}", total=trials, line="")

    def __enter__(self) -> TuneView:
        self.refresh()
        self.bars.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.refresh()
        self.bars.stop()

    def trial_done(self, study: Any, trial: Any) -> None:
        """An Optuna callback: redraw after each trial."""
        self.refresh()

    def refresh(self) -> None:
        """Read the study's trials (from its database, which other processes may be writing) and redraw."""
        import optuna

        counts = {state: 0 for state in optuna.trial.TrialState}
        for trial in self.study.get_trials(deepcopy=False):
            counts[trial.state] += 1
        done = counts[optuna.trial.TrialState.COMPLETE] + counts[optuna.trial.TrialState.PRUNED]
        line = f"pruned {counts[optuna.trial.TrialState.PRUNED]}  failed {counts[optuna.trial.TrialState.FAIL]}"
        if counts[optuna.trial.TrialState.COMPLETE]:
            best = self.study.best_trial
            line = f"best {best.value:.1f} (trial {best.number})  " + line
        self.bars.update(self.task, completed=min(done, self.trials), line=line)


__all__ = ["TuneView"]
